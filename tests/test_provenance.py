"""Each task names the ONNX nodes it computes; ONNX Runtime's per-node times map onto the tasks."""

from __future__ import annotations

import onnx
import pytest

from benchmarks.models import resnet18_model, transformer_encoder_model
from tests.conftest import run_cli
from tuner.bench import random_inputs
from tuner.model import load
from tuner.tasks import partition

# ops that are free in both runtimes once the model is imported (folded, or a pure reshape)
_NO_TASK = {"Flatten", "Reshape", "Shape", "Constant"}


@pytest.fixture(scope="module")
def models():
    return {"resnet18": load(resnet18_model(size=32, width=8, num_classes=10)),
            "transformer": load(transformer_encoder_model(seq_len=16, d_model=32, num_heads=2, d_ff=64))}


@pytest.mark.parametrize("name", ["resnet18", "transformer"])
def test_every_task_names_its_onnx_nodes_and_every_computing_node_has_a_task(models, backend, name):
    model = models[name]
    parts = partition(model, backend)
    for task in parts.tasks:
        assert task.nodes, f"{task.name} names no ONNX node"
    owners = {}
    for task in parts.tasks:
        for node in task.nodes:
            owners.setdefault(node.index, set()).add(task.name)
    for node in model.nodes:
        if node.op_type not in _NO_TASK:
            assert node.index in owners, f"{node.name} ({node.op_type}) is in no task"
    # each node in one task only: identical groups share a task, never a node
    assert all(len(tasks) == 1 for tasks in owners.values())


def test_a_task_shared_by_identical_layers_names_the_nodes_of_every_call_site(models, backend):
    parts = partition(models["resnet18"], backend)
    shared = [task for task in parts.tasks if task.weight == 2 and "conv2d" in task.name]
    assert shared
    for task in shared:
        convs = [node for node in task.nodes if node.op_type == "Conv"]
        norms = [node for node in task.nodes if node.op_type == "BatchNormalization"]
        assert len(convs) == 2 and len(norms) == 2, task.nodes  # folded BatchNorms keep their names


def test_tasks_command_shows_the_nodes(tmp_path):
    path = tmp_path / "t.onnx"
    onnx.save(transformer_encoder_model(seq_len=16, d_model=32, num_heads=2, d_ff=64), path)
    result = run_cli("tasks", path)
    assert result.returncode == 0 and result.stderr == ""
    assert "ONNX nodes: ln1 (LayerNormalization)" in result.stdout or "ln1 (LayerNormalization)" in result.stdout
    assert "q.matmul (MatMul)" in result.stdout


@pytest.mark.parametrize("name", ["resnet18", "transformer"])
def test_onnx_runtime_node_times_land_on_tasks(models, backend, name):
    from tuner.ort_profile import node_times

    model = models[name]
    arrays = random_inputs(model.inputs)
    times = node_times(model, {spec.name: array for spec, array in zip(model.inputs, arrays)}, backend.num_cores,
                       runs=5)
    owned = {node.index for task in partition(model, backend).tasks for node in task.nodes}
    on_tasks = sum(ms for index, ms in times.by_node.items() if index in owned)
    assert times.unmapped_ms == 0.0  # every optimized node, layout conversions included, traced back
    assert on_tasks > 0.8 * times.total_ms
    assert 0.5 * times.run_ms < times.total_ms <= 1.05 * times.run_ms


def test_onnx_runtime_layout_conversions_trace_to_the_user_nodes(models):
    from tuner.ort_profile import trace

    graph = models["resnet18"].proto.graph
    helper = onnx.helper
    optimized = helper.make_graph([
        helper.make_node("ReorderInput", ["x"], ["token_0"], name="ReorderInput"),
        helper.make_node("Conv", ["token_0", "w"], ["token_1"], name="stem.relu.out_nchwc"),
        helper.make_node("ReorderOutput", ["token_1"], ["token_2"], name="ReorderOutput"),
        helper.make_node("MaxPool", ["token_2"], [graph.node[3].output[0]], name="pool_fused"),
    ], "optimized", [], [])
    origin = trace(optimized, graph)
    names = [node.name for node in graph.node]
    assert names[origin["stem.relu.out_nchwc"]] == "stem.relu"  # through its name: <tensor>_nchwc
    assert names[origin["ReorderInput"]] == "stem.relu"  # through the node it feeds
    assert origin["pool_fused"] == 3  # through a tensor of the user's graph
    assert origin["ReorderOutput"] is not None
