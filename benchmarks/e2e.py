"""Tune whole models, build them from the cache, and compare with ONNX Runtime in the same run.

    python -m benchmarks.e2e --models resnet18 --time 20m --cache build/bench/e2e.sqlite
    python -m benchmarks.e2e --models resnet18 mobilenetv2 transformer mlp --trials 0   # untuned (defaults)
    python -m benchmarks.e2e --models resnet18 --trials 3000 --search random --scheduler work-share

Without ``--trials`` or ``--time`` each model is tuned for the tuner's default time budget.

Prints one table row per model (and ``--json FILE``): tuned latency, ONNX Runtime latency, the
speed ratio, the largest output difference, and how long tuning took.
"""

from __future__ import annotations

import argparse
import json
import time

import tuner
from benchmarks.models import build as build_model
from tuner.cli import parse_duration
from tuner.scheduler import SCHEDULERS
from tuner.strategy import SEARCHES


def run_model(name, backend, cache, settings, repeat=7, progress=True, **model_args) -> dict:
    model = tuner.load(build_model(name, **model_args))
    started = time.perf_counter()
    report = None
    if settings.trials != 0:
        report = tuner.tune(model, backend, cache, settings, progress=progress)
    tune_s = time.perf_counter() - started
    bench = tuner.bench(model, backend, cache, repeat=repeat)
    row = bench.to_json()
    row.update({"trials": report.trials if report else 0, "measured": report.measured if report else 0,
                "tune_s": round(tune_s, 1)})
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18"])
    parser.add_argument("--trials", type=int, help="total trials per model (0: no tuning)")
    parser.add_argument("--cache", default="build/bench/e2e.sqlite")
    parser.add_argument("--json", help="write the rows as JSON to this file")
    parser.add_argument("--time", help="wall-clock tuning budget per model, e.g. 20m (default: none)")
    parser.add_argument("--search", default=tuner.TuneSettings.search, choices=list(SEARCHES))
    parser.add_argument("--scheduler", default=tuner.TuneSettings.scheduler, choices=list(SCHEDULERS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = tuner.TuneSettings(trials=args.trials, seed=args.seed, search=args.search, scheduler=args.scheduler,
                                  time_budget_s=parse_duration(args.time) if args.time else None)
    backend = tuner.resolve_backend("host")
    rows = []
    with tuner.Cache(args.cache) as cache:
        for name in args.models:
            rows.append(run_model(name, backend, cache, settings))
    print(f"backend {backend}; search {args.search}, scheduler {args.scheduler}")
    print(f"{'model':<12} {'trials':>6} {'tune s':>7} {'tuner ms':>9} {'ORT ms':>9} {'ORT/tuner':>9} "
          f"{'max|err|':>9} {'tuned tasks':>11}")
    for row in rows:
        print(f"{row['model']:<12} {row['trials']:>6} {row['tune_s']:>7.0f} {row['tuner_ms']:>9.3f} "
              f"{row['onnxruntime_ms']:>9.3f} {row['speedup_vs_onnxruntime']:>9.3f} {row['max_abs_err']:>9.2g} "
              f"{row['tasks_tuned']:>5}/{row['tasks']:<5}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"backend": backend.key, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
