"""3x3 convolutions built direct and as Winograd's (``tuner.winograd``), timed in alternation with ONNX Runtime.

    python -m benchmarks.winograd
    python -m benchmarks.winograd --trials 96 --cache build/bench/winograd.sqlite
    python -m benchmarks.winograd --shapes 64x64x56 256x256x14

Each shape (input channels x output channels x map size; a Conv with bias and ReLU) is built twice in
one process: direct (``MIN_CHANNEL_RATIO`` lifted out of reach) and as Winograd's whether
``tuner.winograd`` would choose it or not, from the cache's schedules (the defaults where it has
none; ``--trials N`` first tunes each build's tasks for N trials). Per shape: the median latency of
each build and of ONNX Runtime, the medians of the rounds' ratios Winograd / direct and Winograd /
ONNX Runtime, the largest output difference relative to the output's largest magnitude, and whether
the product's threshold picks Winograd for it.
"""

from __future__ import annotations

import argparse
import math
import statistics

import tuner
import tuner.winograd
from benchmarks.models import conv_model
from tuner.bench import against_onnxruntime, max_relative_difference, onnxruntime_session, random_inputs
from tuner.tune import TuneSettings

SHAPES = ("64x64x56", "128x128x28", "256x256x14", "512x512x7", "64x96x28", "128x32x56")


def _build(model, backend, cache, trials: int, direct: bool):
    saved = tuner.winograd.MIN_CHANNEL_RATIO, tuner.winograd.MIN_TILES
    # direct: out of reach; else every 3x3 convolution of stride 1
    tuner.winograd.MIN_CHANNEL_RATIO, tuner.winograd.MIN_TILES = (math.inf, math.inf) if direct else (0, 0)
    try:
        if trials:
            tuner.tune(model, backend, cache, TuneSettings(trials=trials), progress=False)
        return tuner.build(model, backend, cache).runner()
    finally:
        tuner.winograd.MIN_CHANNEL_RATIO, tuner.winograd.MIN_TILES = saved


def compare(shape: str, cache, trials: int, rounds: int) -> dict:
    in_channels, out_channels, size = (int(d) for d in shape.split("x"))
    model = tuner.load(conv_model(in_channels=in_channels, out_channels=out_channels, size=size))
    backend = tuner.resolve_backend("host")
    arrays = random_inputs(model.inputs, 0)
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    reference = onnxruntime_session(model, backend.num_cores).run(None, feeds)
    runners = {name: _build(model, backend, cache, trials, name == "direct") for name in ("direct", "winograd")}
    difference = max_relative_difference(runners["winograd"].run(*arrays), reference)
    times = against_onnxruntime(model, runners, arrays, rounds, backend.num_cores, 0.1)

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    ratio_channels = in_channels * out_channels / (in_channels + out_channels)
    chosen = ratio_channels >= tuner.winograd.MIN_CHANNEL_RATIO and ((size + 1) // 2) ** 2 >= tuner.winograd.MIN_TILES
    return {"shape": shape, **{f"{name}_ms": statistics.median(times[name]) * 1e3 for name in times},
            "winograd_over_direct": ratio("winograd", "direct"), "winograd_over_ort": ratio("winograd", "onnxruntime"),
            "relative_difference": difference, "chosen": chosen}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="CINxCOUTxSIZE")
    parser.add_argument("--cache", default=":memory:", help="schedules to build with (default: none, the defaults)")
    parser.add_argument("--trials", type=int, default=0, help="tune each build's tasks this many trials first")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    with tuner.Cache(args.cache) as cache:
        for shape in args.shapes:
            row = compare(shape, cache, args.trials, args.rounds)
            print(f"{row['shape']:>11}  direct {row['direct_ms']:7.3f} ms  winograd {row['winograd_ms']:7.3f} ms  "
                  f"onnxruntime {row['onnxruntime_ms']:7.3f} ms  winograd/direct {row['winograd_over_direct']:.3f}  "
                  f"winograd/ort {row['winograd_over_ort']:.3f}  rel. diff {row['relative_difference']:.1e}  "
                  f"{'chosen' if row['chosen'] else 'not chosen'}", flush=True)


if __name__ == "__main__":
    main()
