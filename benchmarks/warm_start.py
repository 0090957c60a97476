"""Warm start: tuning a new model with another model's records in the cache, against an empty cache.

    python -m benchmarks.warm_start --source-cache build/bench/e2e.sqlite --model resnet18 --set size=160 \\
        --trials 600

The source cache holds records of other tasks (e.g. ResNet-18 at 224x224 tuned by
``benchmarks.e2e``); ``--model`` must have none of them. Model-guided search tunes the model twice,
with the same settings and seed: ``cold`` into an empty cache, ``warm`` into a cache that starts as
a copy of this backend's records in the source cache, so its cost model starts trained on them.
Reported: both curves of estimated model latency (sum of weight x best measured latency) over
trials, and the trials each needs to reach the cold run's final latency (and a few looser levels).
As the two runs are minutes apart and this machine's speed drifts, the model is then built from
each cache as it stood after the first pass over all tasks and at the end, and the four builds are
timed in alternation in one run (``--time-only``: only this step, on the caches of an earlier run).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
from pathlib import Path

import tuner
from benchmarks.models import parse_settings, build as build_model
from tuner.bench import interleaved_s, model_batch_timer, random_inputs

LEVELS = (1.10, 1.05, 1.02, 1.0)  # multiples of the cold run's final latency


def copy_backend_records(source: Path, destination: Path, backend) -> int:
    """Start ``destination`` (created) with ``source``'s records of ``backend``, via the export format."""
    buffer = io.StringIO()
    with tuner.Cache(source) as cache:
        cache.export_jsonl(buffer, backend_key=backend.key)
    buffer.seek(0)
    with tuner.Cache(destination) as cache:
        new, _ = cache.import_jsonl(buffer, source=str(source))
    return new


def snapshot(path: Path, destination: Path, backend, keys: set, trials: int) -> Path:
    """A cache holding the model's first ``trials`` records in ``path``: the run as it stood then."""
    with tuner.Cache(path) as cache:
        records = [r for r in cache.records(backend.key) if r.workload_key in keys][:trials]
    for stale in destination.parent.glob(destination.name + "*"):
        stale.unlink()
    with tuner.Cache(destination) as copy:
        copy.add_backend(backend)
        copy.add_many(records)
    return destination


def timed_in_one_run(model, backend, keys: set, directory: Path, points: dict, repeat: int = 9) -> dict:
    """{(run, trials): median ms} of the model (its tasks' workload ``keys``) built from each run's cache
    after ``trials`` trials, all timed in alternation. ``points`` maps a run name to its trial counts."""
    arrays = random_inputs(model.inputs)
    timers = {}
    for name, counts in points.items():
        for trials in counts:
            path = snapshot(directory / f"{name}.sqlite", directory / f"{name}-at-{trials}.sqlite", backend, keys,
                            trials)
            with tuner.Cache(path) as cache:
                built = tuner.build(model, backend, cache)
            timers[(name, trials)] = model_batch_timer(built.runner(), arrays, 0.1)
    times = interleaved_s(timers, repeat)
    return {point: statistics.median(seconds) * 1e3 for point, seconds in times.items()}


def trials_to_reach(curve, level_ms: float):
    return next((trials for trials, estimate in curve if estimate is not None and estimate <= level_ms), None)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-cache", required=True, help="a cache with another model's records")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model builder argument")
    parser.add_argument("--trials", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default="build/bench/warm_start")
    parser.add_argument("--json", help="write both reports' curves as JSON to this file")
    parser.add_argument("--time-only", action="store_true",
                        help="skip tuning: time the builds of the caches an earlier run left in --dir")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    backend = tuner.resolve_backend("host")
    model = tuner.load(build_model(args.model, **parse_settings(args.set)))
    keys = {task.workload_key for task in tuner.partition(model, backend).tasks}
    with tuner.Cache(args.source_cache) as source:
        shared = [key for key in keys if source.count(backend.key, key)]
    if shared:
        raise SystemExit(f"the source cache already has records of {len(shared)} of the model's tasks; "
                         "pick a model whose tasks differ")
    if not args.time_only:
        tune_both(args, model, backend, directory)
    first_pass = len(keys) * tuner.ModelGuidedSettings.batch_size  # every task measured once: a defined curve
    points = {"cold": (first_pass, args.trials), "warm": (first_pass, args.trials)}
    latencies = timed_in_one_run(model, backend, keys, directory, points)
    print("\nbuilt from each cache after so many trials and timed in alternation, one run (median ms):")
    for (name, trials), ms in latencies.items():
        print(f"  {name:<5} after {trials:>5} trials: {ms:8.3f} ms")
    cold_final = latencies[("cold", args.trials)]
    print(f"warm after {first_pass} trials / cold after {args.trials}: "
          f"{latencies[('warm', first_pass)] / cold_final:.3f}; warm / cold, both after {args.trials}: "
          f"{latencies[('warm', args.trials)] / cold_final:.3f}")
    if args.json:
        path = Path(args.json)
        data = json.loads(path.read_text()) if path.exists() else {}
        data["timed_in_one_run"] = [{"run": name, "trials": trials, "ms": ms}
                                    for (name, trials), ms in latencies.items()]
        path.write_text(json.dumps(data, indent=2))


def tune_both(args, model, backend, directory: Path) -> None:
    settings = tuner.TuneSettings(trials=args.trials, search="model", scheduler="gradient", seed=args.seed)
    reports = {}
    for name in ("cold", "warm"):
        path = directory / f"{name}.sqlite"
        for stale in directory.glob(f"{name}.sqlite*"):
            stale.unlink()
        copied = copy_backend_records(Path(args.source_cache), path, backend) if name == "warm" else 0
        with tuner.Cache(path) as cache:
            report = tuner.tune(model, backend, cache, settings)
        print(f"{name}: started with {copied} records; {report.table().splitlines()[-1]}")
        reports[name] = report
    final = reports["cold"].estimated_ms
    print(f"\nbackend {backend}; {args.model} {' '.join(args.set)}, {args.trials} trials each, model-guided search")
    print(f"{'latency level':>22} {'cold trials':>12} {'warm trials':>12}")
    for level in LEVELS:
        cold, warm = (trials_to_reach(reports[n].curve, final * level) for n in ("cold", "warm"))
        print(f"{final * level:>10.3f} ms ({level:.2f}x) {str(cold):>12} {str(warm):>12}")
    print("\ncurves (trials: cold ms / warm ms)")
    warm_curve = dict(reports["warm"].curve)
    for trials, estimate in reports["cold"].curve:
        other = warm_curve.get(trials)
        if estimate is not None or other is not None:
            print(f"  {trials:>5}: {estimate or float('nan'):8.3f} / {other or float('nan'):8.3f}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"backend": backend.key, "model": args.model, "settings": args.set,
                       "cold": reports["cold"].to_json(), "warm": reports["warm"].to_json()}, stream, indent=2)


if __name__ == "__main__":
    main()
