"""Real architectures against ONNX Runtime: the classic CNNs that ship inside the ``onnx`` package
and a BERT-style encoder, each built (and with ``--time``, tuned for that long) and timed in
alternation with ONNX Runtime in one run.

    python -m benchmarks.zoo                         # untuned: default schedules
    python -m benchmarks.zoo --time 20m --cache build/bench/zoo.sqlite
    python -m benchmarks.zoo --models resnet50 bert --json build/bench/zoo.json

The CNNs (``onnx/backend/test/data/light/light_*.onnx``) keep their weights as
``ConstantOfShape`` fills, one value for every element, so every channel would compute the
same thing: ``prepare`` replaces each fill by a seeded random tensor of its shape (He-scaled
for weights, positive for BatchNorm variances and scales), drops the initializers listed as
graph inputs and the final Softmax (which saturates: logits are compared). Per model it prints
our latency, ONNX Runtime's, the ratio (the median of the rounds' ratios), the largest output
difference relative to the output's largest magnitude, and the tuning time; the geo-mean last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import tuner
from tuner.cli import parse_duration

LIGHT = {"resnet50": "light_resnet50", "densenet121": "light_densenet121", "inception_v2": "light_inception_v2",
         "shufflenet": "light_shufflenet"}
ZOO = (*LIGHT, "bert")


def light_path(name: str) -> Path:
    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light" / f"{LIGHT[name]}.onnx"


def load_zoo_model(name: str, seed: int = 0) -> onnx.ModelProto:
    if name == "bert":
        from benchmarks.bert import bert_model

        return bert_model()
    return prepare(onnx.load(str(light_path(name))), seed)


def prepare(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of a light model with random weights in place of its ConstantOfShape fills, no
    initializers among the graph inputs and no final Softmax."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    rng = np.random.default_rng(seed)
    shapes = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    roles = _roles(graph)
    fills = [node for node in graph.node if node.op_type == "ConstantOfShape" and node.input[0] in shapes]
    for node in fills:
        shape = tuple(int(d) for d in shapes[node.input[0]])
        graph.initializer.append(numpy_helper.from_array(_random(rng, shape, roles.get(node.output[0])),
                                                         node.output[0]))
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)
    weights = {init.name for init in graph.initializer}
    for value in [value for value in graph.input if value.name in weights or value.name not in used]:
        graph.input.remove(value)
    _drop_final_softmax(graph)
    model.ir_version = max(model.ir_version, 4)  # from IR 4 on, initializers need not be graph inputs
    return model


def _roles(graph) -> dict:
    """How each tensor is used, where that decides its distribution."""
    roles = {}
    for node in graph.node:
        if node.op_type == "BatchNormalization":
            for name, role in zip(node.input[1:], ("scale", "shift", "shift", "variance")):
                roles[name] = role
        elif node.op_type in ("Mul", "Add"):  # a scale layer's per-channel factor or offset
            for name in node.input[1:]:
                roles.setdefault(name, "scale" if node.op_type == "Mul" else "shift")
    return roles


def _random(rng, shape: tuple, role: str | None) -> np.ndarray:
    if role in ("scale", "variance"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if role == "shift" or len(shape) < 2:
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    fan_in = math.prod(shape[1:])
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)


def _drop_final_softmax(graph) -> None:
    (output,) = graph.output
    last = next((node for node in graph.node if output.name in node.output), None)
    if last is None or last.op_type != "Softmax":
        return
    graph.node.remove(last)
    output.name = last.input[0]


def run_model(name: str, backend, cache, settings, repeat: int) -> dict:
    model = tuner.load(load_zoo_model(name))
    started = time.perf_counter()
    if settings is not None:
        tuner.tune(model, backend, cache, settings, progress=False)
    tune_s = time.perf_counter() - started
    report = tuner.bench(model, backend, cache, repeat=repeat)
    ratio = statistics.median(a / b for a, b in zip(report.tuner_repeats_ms, report.onnxruntime_repeats_ms))
    return {"model": name, "tuner_ms": report.tuner_ms, "onnxruntime_ms": report.onnxruntime_ms,
            "ratio": ratio, "relative_difference": report.max_rel_err,
            "tasks": report.tasks, "tasks_tuned": report.tasks_tuned, "tune_s": round(tune_s, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--time", help="tune each model for this long first, e.g. 20m (default: untuned)")
    parser.add_argument("--cache", default="build/bench/zoo.sqlite")
    parser.add_argument("--repeat", type=int, default=15, help="rounds of alternation per model")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    settings = tuner.TuneSettings(time_budget_s=parse_duration(args.time)) if args.time else None
    backend = tuner.resolve_backend("host")
    rows = []
    with tuner.Cache(args.cache if args.time else ":memory:") as cache:
        for name in args.models:
            rows.append(run_model(name, backend, cache, settings, args.repeat))
            print(_line(rows[-1]), flush=True)
    geo = math.exp(statistics.fmean(math.log(row["ratio"]) for row in rows))
    print(f"backend {backend}; {'tuned ' + args.time + ' each' if args.time else 'untuned (default schedules)'}")
    print(f"geo-mean ratio to ONNX Runtime: {geo:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"backend": backend.key, "time": args.time, "rows": rows,
                                               "geomean_ratio": geo}, indent=2))


def _line(row: dict) -> str:
    return (f"{row['model']:<13} tuner {row['tuner_ms']:9.3f} ms  onnxruntime {row['onnxruntime_ms']:9.3f} ms  "
            f"ratio {row['ratio']:.3f}  rel. diff {row['relative_difference']:.1e}  "
            f"tuned {row['tasks_tuned']}/{row['tasks']}  tune {row['tune_s']:.0f} s")


if __name__ == "__main__":
    main()
