"""ONNX Runtime's time per node of the user's model, from its own profiler.

ONNX Runtime optimizes the graph before it runs it: it fuses nodes (Conv+Add+Relu,
MatMul+Add), converts layouts (NCHWc, with ``ReorderInput``/``ReorderOutput`` nodes of
its own) and renames what it creates. Its profiler times the nodes of that optimized
graph, which it also writes out (``optimized_model_filepath``). Each optimized node is
traced back to a node of the user's graph: through a tensor of the user's graph that it
outputs, else through its name (``<node>/MatMulAddFusion``, ``<tensor>_nchwc``), else
through the node it feeds or is fed by (a layout conversion or reshape of its own).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeTimes:
    """Milliseconds per run of ONNX Runtime's nodes, by the index of the user's node they come from."""

    by_node: dict  # node index -> ms per run
    unmapped_ms: float  # nodes traced to no node of the user's graph
    run_ms: float  # mean time of a whole run while profiling: the nodes' times are means over the same runs

    @property
    def total_ms(self) -> float:
        return sum(self.by_node.values()) + self.unmapped_ms


def node_times(model, feeds: dict, num_threads: int, runs: int = 20) -> NodeTimes:
    """Profile ``runs`` runs of ONNX Runtime on ``feeds`` (after one warm-up) and attribute its nodes'
    times to the model's nodes."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(model.proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):  # the first run warms up; ``_attribute`` leaves it out
            session.run(None, feeds)
        with open(session.end_profiling()) as stream:
            events = json.load(stream)
        optimized = onnx.load(options.optimized_model_filepath)
    return _attribute(events, optimized.graph, model.proto.graph, runs)


def _attribute(events, optimized_graph, graph, runs: int) -> NodeTimes:
    origin = trace(optimized_graph, graph)
    kernel = defaultdict(list)
    for event in events:
        name = event.get("name", "")
        if event.get("cat") == "Node" and name.endswith("_kernel_time"):
            kernel[name[: -len("_kernel_time")]].append(event["dur"] / 1e3)
    by_node: dict = defaultdict(float)
    unmapped = 0.0
    for name, samples in kernel.items():
        per_run = sum(samples[-runs * _calls(samples, runs):]) / runs  # the warm-up run is left out
        if origin.get(name) is None:
            unmapped += per_run
        else:
            by_node[origin[name]] += per_run
    whole = [event["dur"] / 1e3 for event in events if event.get("name") == "model_run"]
    # a mean, as the nodes' are: with a median, one slow run under load put the nodes' sum at 2.5x the run
    return NodeTimes(dict(by_node), unmapped, statistics.mean(whole[-runs:]) if whole else 0.0)


def _calls(samples, runs: int) -> int:
    """How often a node runs in one run (the profile holds ``runs`` + 1 runs)."""
    return max(1, len(samples) // (runs + 1))


def trace(optimized_graph, graph) -> dict:
    """Each node name of the optimized graph -> the index of the user's node it comes from (or None)."""
    producer = {tensor: index for index, node in enumerate(graph.node) for tensor in node.output}
    by_name = {node.name: index for index, node in enumerate(graph.node) if node.name}
    origin = {}
    for node in optimized_graph.node:
        origin[node.name] = _direct(node, producer, by_name)
    consumers = defaultdict(list)
    for node in optimized_graph.node:
        for tensor in node.input:
            consumers[tensor].append(node.name)
    made_by = {tensor: node.name for node in optimized_graph.node for tensor in node.output}
    for _ in range(len(optimized_graph.node)):  # follow the data until nothing changes
        changed = False
        for node in optimized_graph.node:
            if origin[node.name] is not None:
                continue
            near = [name for tensor in node.output for name in consumers[tensor]]
            near += [made_by[tensor] for tensor in node.input if tensor in made_by]
            found = next((origin[name] for name in near if origin[name] is not None), None)
            if found is not None:
                origin[node.name], changed = found, True
        if not changed:
            break
    return origin


def _direct(node, producer, by_name):
    for tensor in node.output:
        if tensor in producer:
            return producer[tensor]
    candidates = [node.name, node.name.split("/")[0]]
    for suffix in ("_nchwc", "_new_reshape"):
        if node.name.endswith(suffix):
            candidates.append(node.name[: -len(suffix)])
    for name in candidates:
        if name in by_name:
            return by_name[name]
        if name in producer:
            return producer[name]
    return None
