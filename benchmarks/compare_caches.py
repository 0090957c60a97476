"""Which of several tuning caches builds the faster model: built from each, timed in alternation.

    python -m benchmarks.compare_caches model.onnx hot.sqlite:hot cold.sqlite:cold --rounds 15

Each ``CACHE[:TIMING]`` is built with the records of that timing (``--timing``; default the
tuner's), and the builds and ONNX Runtime are timed in turns in one run (``tuner.bench.against_onnxruntime``),
so that the machine's slow and fast spells hit all alike: medians of ``--rounds``. Then, per build,
each task's recorded best per call against its time in the model (``tuner.profile``): how well the
timing the cache was tuned with predicts the model.
"""

from __future__ import annotations

import argparse
import json
import statistics

import tuner
from tuner.backend import DEFAULT_TIMING, TIMINGS
from tuner.bench import against_onnxruntime, random_inputs
from tuner.errors import TunerError
from tuner.profile import profile


def parse_cache(spec: str) -> tuple[str, str]:
    """``PATH`` or ``PATH:TIMING`` -> (path, timing)."""
    path, colon, timing = spec.rpartition(":")
    return (path, timing) if colon and timing in TIMINGS else (spec, DEFAULT_TIMING)


def compare(model, caches: list[tuple[str, str]], rounds: int, target="host", min_repeat_s: float = 0.1) -> dict:
    """{"median_ms": {name: ms}, "rounds_ms": {name: [ms]}, "tasks": {name: [rows]}} for the builds of
    ``caches`` ([(path, timing)]) and "onnxruntime"; a name is ``path:timing``."""
    arrays = random_inputs(model.inputs, 0)
    builds = {}
    for path, timing in caches:
        backend = tuner.resolve_backend(target, timing=timing)
        with tuner.Cache(path) as cache:
            builds[f"{path}:{timing}"] = tuner.build(model, backend, cache)
    times = against_onnxruntime(model, {name: built.runner() for name, built in builds.items()}, arrays, rounds,
                                backend.num_cores, min_repeat_s)
    tasks = {}
    for name, built in builds.items():
        tasks[name] = [{"task": row.task_name, "calls": row.calls_per_run, "recorded_ms": row.tuned_ms,
                        "in_model_ms": row.ms_per_run / max(row.calls_per_run, 1)}
                       for row in profile(built, arrays)]
    return {"median_ms": {name: statistics.median(t) * 1e3 for name, t in times.items()},
            "rounds_ms": {name: [s * 1e3 for s in t] for name, t in times.items()}, "tasks": tasks}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="ONNX file")
    parser.add_argument("caches", nargs="+", metavar="CACHE[:TIMING]")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, got {args.rounds}")
    try:
        result = compare(tuner.load(args.model), [parse_cache(spec) for spec in args.caches], args.rounds)
    except TunerError as err:
        raise SystemExit(f"compare_caches: error: {err}") from None
    for name, ms in result["median_ms"].items():
        print(f"{name:<48} median {ms:9.3f} ms  ({', '.join(f'{x:.2f}' for x in result['rounds_ms'][name])})")
    for name, rows in result["tasks"].items():
        recorded = sum(r["recorded_ms"] * r["calls"] for r in rows if r["recorded_ms"] is not None)
        in_model = sum(r["in_model_ms"] * r["calls"] for r in rows if r["recorded_ms"] is not None)
        print(f"\n{name}: recorded bests {recorded:.3f} ms per run, the same tasks in the model {in_model:.3f} ms")
        print(f"  {'task':<44} {'calls':>5} {'recorded':>9} {'in model':>9}")
        for row in rows:
            recorded_ms = f"{row['recorded_ms']:9.3f}" if row["recorded_ms"] is not None else f"{'-':>9}"
            print(f"  {row['task'][:44]:<44} {row['calls']:>5} {recorded_ms} {row['in_model_ms']:9.3f}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)


if __name__ == "__main__":
    main()
