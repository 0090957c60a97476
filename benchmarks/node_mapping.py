"""How much of ONNX Runtime's time the per-task mapping of `tuner report` accounts for.

    python -m benchmarks.node_mapping [--models resnet18 transformer] [--cache PATH]

For each model: ONNX Runtime's latency (timed in alternation with ours, as `tuner bench` does),
the sum of its per-node profiler times that land on our tasks, and the ratio of the two.
"""

from __future__ import annotations

import argparse

from benchmarks.models import MODELS
from tuner.backend import resolve_backend
from tuner.cache import Cache
from tuner.model import load
from tuner.report import OUTSIDE, gather


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "transformer"])
    parser.add_argument("--cache", default=":memory:")
    args = parser.parse_args(argv)
    backend = resolve_backend("host")
    with Cache(args.cache) as cache:
        for name in args.models:
            report = gather(load(MODELS[name]()), backend, cache)
            on_tasks = sum(row.onnxruntime_ms or 0.0 for row in report.rows if row.task != OUTSIDE)
            outside = sum(row.onnxruntime_ms or 0.0 for row in report.rows if row.task == OUTSIDE)
            print(f"{name}: ONNX Runtime {report.onnxruntime_ms:.3f} ms (profiled run "
                  f"{report.onnxruntime_profiled_ms:.3f} ms); its nodes on our tasks {on_tasks:.3f} ms "
                  f"({on_tasks / report.onnxruntime_ms:.1%} of its latency), outside any task {outside:.3f} ms; "
                  f"ours {report.tuner_ms:.3f} ms; {len(report.rows)} rows")


if __name__ == "__main__":
    main()
