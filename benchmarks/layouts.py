"""A model built in each convolution layout (``tuner.layout``), timed in alternation with ONNX Runtime.

    python -m benchmarks.layouts --models resnet50 inception_v2
    python -m benchmarks.layouts --models resnet50 --cache build/bench/zoo.sqlite --rounds 11
    python -m benchmarks.layouts --layouts nchw auto --time 20m --cache build/bench/layouts.sqlite
    python -m benchmarks.layouts --layouts nchw auto --own-caches --cache build/bench/layouts.sqlite

Each model of ``benchmarks.zoo`` is built with the cache's schedules (defaults where it has none) in
NCHW, NCHW8c, NCHW16c and the layout chosen per stage (``auto``, from the records), and the builds
and ONNX Runtime are timed in turns in one run. With ``--time``, each layout is first tuned that long
into a cache of its own (``PATH`` becomes ``PATH.nchw``, ``PATH.auto``, ...: ``auto`` would otherwise
build on the others' records; ``--own-caches`` builds from those again). Per layout
the median latency, the median of the rounds' ratios to ONNX Runtime, and the largest output
difference relative to the output's largest magnitude.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path

import tuner
from benchmarks.zoo import ZOO, load_zoo_model
from tuner.bench import against_onnxruntime, max_relative_difference, onnxruntime_session, random_inputs
from tuner.cli import parse_duration
from tuner.layout import LAYOUTS


def compare_layouts(model, layouts: list[str], caches: dict, rounds: int, settings=None,
                    min_repeat_s: float = 0.1) -> list[dict]:
    """Rows per layout and for ONNX Runtime; ``caches``: {layout: tuner.Cache}."""
    arrays = random_inputs(model.inputs, 0)
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    num_threads = tuner.resolve_backend("host").num_cores
    reference = onnxruntime_session(model, num_threads).run(None, feeds)
    runners, differences = {}, {}
    for name in layouts:
        backend = tuner.resolve_backend("host", conv_block=LAYOUTS[name])
        if settings is not None:
            tuner.tune(model, backend, caches[name], settings, progress=False)
        built = tuner.build(model, backend, caches[name])
        if built.layout_plan is not None:
            print(built.layout_plan.describe(), flush=True)
        runners[name] = built.runner()
        differences[name] = max_relative_difference(runners[name].run(*arrays), reference)
    times = against_onnxruntime(model, runners, arrays, rounds, num_threads, min_repeat_s)
    ort = times["onnxruntime"]
    return [{"layout": name, "ms": statistics.median(times[name]) * 1e3,
             "ratio": statistics.median(a / b for a, b in zip(times[name], ort)),
             "relative_difference": differences[name]} for name in layouts] + \
        [{"layout": "onnxruntime", "ms": statistics.median(ort) * 1e3, "ratio": 1.0, "relative_difference": 0.0}]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50"], choices=[m for m in ZOO if m != "bert"])
    parser.add_argument("--layouts", nargs="+", default=["nchw", "nchw8c", "nchw16c"], choices=list(LAYOUTS))
    parser.add_argument("--cache", default=":memory:", help="schedules to build with (default: none, the defaults)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of alternation per model")
    parser.add_argument("--time", help="tune each model in each layout for this long first, e.g. 8m")
    parser.add_argument("--own-caches", action="store_true",
                        help="build each layout from its own cache, as --time writes them (PATH.LAYOUT)")
    args = parser.parse_args(argv)
    settings = tuner.TuneSettings(time_budget_s=parse_duration(args.time)) if args.time else None
    with contextlib.ExitStack() as stack:
        shared = None if settings or args.own_caches else stack.enter_context(tuner.Cache(args.cache))
        caches = {name: shared if shared is not None else stack.enter_context(tuner.Cache(_own_path(args.cache, name))) for name in args.layouts}
        for model_name in args.models:
            rows = compare_layouts(tuner.load(load_zoo_model(model_name)), args.layouts, caches, args.rounds,
                                   settings)
            for row in rows:
                print(f"{model_name:<13} {row['layout']:<12} {row['ms']:9.3f} ms  ratio to ONNX Runtime "
                      f"{row['ratio']:.3f}  rel. diff {row['relative_difference']:.1e}", flush=True)


def _own_path(path: str, layout: str) -> str:
    if path == ":memory:":
        return path
    base = Path(path)
    return str(base.with_name(f"{base.stem}.{layout}{base.suffix}"))


if __name__ == "__main__":
    main()
