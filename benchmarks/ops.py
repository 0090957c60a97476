"""Tune single operators and time them against their best references on this machine, in one run.

    python -m benchmarks.ops --trials 500 --cache build/bench/ops.sqlite [--ops matmul conv depthwise]

* matmul 1024^3 (fp32) against numpy (OpenBLAS);
* 3x3 conv2d 1x64x56x56 -> 64 (+bias+ReLU) and 3x3 depthwise conv 1x96x56x56 against ONNX Runtime
  running the same one-node model with the same thread count.

Prints a table (and ``--json FILE``): latency, GFLOP/s, and the ratio to the reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import tuner
from benchmarks.models import conv_model, matmul_model
from tuner.bench import batch_timer, interleaved_s, model_batch_timer, onnxruntime_session, random_inputs

OPS = {
    "matmul": lambda: matmul_model(m=1024, k=1024, n=1024),
    "conv": lambda: conv_model(in_channels=64, out_channels=64, size=56, kernel=3, bias=True, relu=True),
    "depthwise": lambda: conv_model(in_channels=96, out_channels=96, size=56, kernel=3, groups=96,
                                    bias=True, relu=False),
}


def _reference_timer(name, model, arrays, backend, min_repeat_s):
    if name == "matmul":
        x = arrays[0]
        weight = _initializer(model.proto)
        return batch_timer(lambda: np.matmul(x, weight), min_repeat_s), "numpy"
    session = onnxruntime_session(model, backend.num_cores)
    feeds = {model.inputs[0].name: arrays[0]}
    return batch_timer(lambda: session.run(None, feeds), min_repeat_s), "onnxruntime"


def _initializer(proto):
    """The weight of a one-MatMul model (its only initializer)."""
    from onnx import numpy_helper

    (weight,) = proto.graph.initializer
    return numpy_helper.to_array(weight)


def run_op(name, backend, cache, trials, repeat=7, min_repeat_s=0.2, seed=0, progress=True) -> dict:
    model = tuner.load(OPS[name]())
    started = time.perf_counter()
    report = tuner.tune(model, backend, cache, tuner.TuneSettings(trials=trials, seed=seed), progress=progress)
    tune_s = time.perf_counter() - started
    built = tuner.build(model, backend, cache)
    compiled = built.runner()
    arrays = random_inputs(model.inputs, seed)
    reference_timer, reference_name = _reference_timer(name, model, arrays, backend, min_repeat_s)
    times = interleaved_s({"tuned": model_batch_timer(compiled, arrays, min_repeat_s),
                           "reference": reference_timer}, repeat)
    tuned_s, reference_s = times["tuned"], times["reference"]
    flops = sum(task["flops"] * task["weight"] for task in report.tasks)
    tuned, reference = statistics.median(tuned_s), statistics.median(reference_s)
    return {
        "op": name, "trials": report.trials, "measured": report.measured, "tune_s": round(tune_s, 1),
        "tuned_ms": tuned * 1e3, "reference": reference_name, "reference_ms": reference * 1e3,
        "tuned_gflops": flops / tuned / 1e9, "reference_gflops": flops / reference / 1e9,
        "speed_vs_reference": reference / tuned,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=list(OPS))
    parser.add_argument("--trials", type=int, default=500, help="trials per op (counting the cache)")
    parser.add_argument("--trials-for", nargs="*", default=[], metavar="OP=N", help="another budget for some ops")
    parser.add_argument("--cache", default="build/bench/ops.sqlite")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    budgets = {name: args.trials for name in args.ops}
    budgets.update({op: int(n) for op, n in (item.split("=") for item in args.trials_for)})
    backend = tuner.resolve_backend("host")
    rows = []
    with tuner.Cache(args.cache) as cache:
        for name in args.ops:
            rows.append(run_op(name, backend, cache, budgets[name], seed=args.seed))
    print(f"backend {backend}")
    print(f"{'op':<10} {'trials':>6} {'tuned ms':>9} {'GFLOP/s':>8} {'reference':>12} {'ref ms':>9} {'GFLOP/s':>8} "
          f"{'tuned speed / ref':>17}")
    for row in rows:
        print(f"{row['op']:<10} {row['trials']:>6} {row['tuned_ms']:>9.3f} {row['tuned_gflops']:>8.1f} "
              f"{row['reference']:>12} {row['reference_ms']:>9.3f} {row['reference_gflops']:>8.1f} "
              f"{row['speed_vs_reference']:>17.2f}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"backend": backend.key, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
