"""Model-guided search against random search: how many trials to the same latency.

    python -m benchmarks.search_compare --ops matmul conv --seeds 0 1 2 --random-trials 512 --model-trials 128

For each op and seed, random search (the default config and those tied with it, then mutations of
the best and random samples) and model-guided search (XGBoost-scored evolution, retrained after
every batch) each tune the op from an empty cache of their own (``--dir``; a run that was cut off
continues where its cache ends). The two runs take turns (``benchmarks.alternate``: at each batch,
the run furthest behind its budget measures), so that both see the machine's slow and fast spells
alike. The best-so-far curve of each run is read back from its cache in measurement order.
Reported per op: random search's best after ``--random-trials``, model-guided search's best after
``--model-trials``, and the trials model-guided search took to reach random search's best (also
within 2 %, as timings of one config differ by about that much between measurements); the
medians over the seeds decide. Then the ``--top`` best configs of each search are measured again,
all in alternation (``--remeasure`` rounds), since the best of 512 noisy measurements is biased low
against the best of 128: each search's fastest config by these medians, and their ratio, compare the
configs the searches found. Timings on this machine drift by up to 2x within minutes, and a config's
recorded best can come from a fast spell that its neighbours in the ranking did not get, so the
recorded best is not always the fastest of a search's top configs timed side by side. As a yardstick
for the noise, the configs near random search's best (within ``NEAR``) that both runs measured are
listed with the ratio of their two timings.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from pathlib import Path

import numpy as np

import tuner
from benchmarks.alternate import alternate
from benchmarks.ops import OPS

TOLERANCE = 0.02
NEAR = 0.15  # configs within 15 % of random search's best are compared between the runs


def best_curve(records) -> np.ndarray:
    """Best mean cost (s) after each of ``records``, in measurement order (inf before the first success)."""
    costs = [r.result.mean_s if r.result.ok else np.inf for r in records]
    return np.minimum.accumulate(np.asarray(costs, dtype=float)) if costs else np.zeros(0)


def tune_curve(op: str, search: str, trials: int, seed: int, directory: Path, backend, wrap=None):
    """The best-so-far curve of one run (s per trial), the config of its best measurement and
    ``{config JSON: mean cost (s)}`` of its successful measurements. ``wrap(builder)`` returns the
    builder the run uses (``Alternation.builder``, to take turns with another run)."""
    model = tuner.load(OPS[op]())
    settings = tuner.TuneSettings(trials=trials, seed=seed, search=search, scheduler="work-share")
    with tuner.Cache(directory / f"{op}-{search}-{seed}.sqlite") as cache, tuner.LocalBuilder(backend) as builder:
        report = tuner.tune(model, backend, cache, settings, builder=wrap(builder) if wrap else builder,
                            progress=False)
        (task,) = report.tasks
        records = list(cache.records(backend.key, task["workload_key"]))[:trials]
        costs = {r.config: r.result.mean_s for r in records if r.result.ok}
        return best_curve(records), min(costs, key=costs.get), costs


def remeasure(op: str, configs: list, rounds: int, backend) -> list:
    """Median latency (s) of each config over ``rounds`` fresh measurements, taken in alternation.

    The best of many measurements is biased low (repeats of one config vary by 2-8 %, measurements
    minutes apart by more, and the minimum over hundreds of near-equal configs picks a lucky one), so
    the best configs of the two searches are measured again, side by side, to compare the configs
    rather than their luckiest runs.
    """
    import search_spaces

    (task,) = tuner.partition(tuner.load(OPS[op]()), backend).tasks
    parsed = [search_spaces.Config.from_json(config) for config in configs]
    costs = [[] for _ in configs]
    settings = tuner.MeasureSettings(confirm_runs=0)  # one run a round
    with tuner.LocalBuilder(backend, settings) as builder, tuner.LocalRunner(backend, settings) as runner:
        for _ in range(rounds):
            for index, result in enumerate(tuner.measure(builder, runner, task, parsed)):
                if result.ok:
                    costs[index].append(result.mean_s)
    return [statistics.median(c) if c else float("inf") for c in costs]


def trials_to_reach(curve: np.ndarray, target_s: float) -> int | None:
    reached = np.flatnonzero(curve <= target_s)
    return int(reached[0]) + 1 if reached.size else None


def top_configs(costs: dict, count: int) -> list:
    """The ``count`` configs of lowest recorded cost in ``{config: cost}``, best first."""
    return sorted(costs, key=costs.get)[:count]


def fastest_again(op: str, tops: dict, rounds: int, backend) -> dict:
    """``{name: (median latency (s), config)}``: the fastest of each search's top configs (``tops``:
    ``{name: [config]}``), all measured again together in alternation; a config in two tops counts for both."""
    pool = list(dict.fromkeys(config for configs in tops.values() for config in configs))
    medians = dict(zip(pool, remeasure(op, pool, rounds, backend)))
    return {name: min((medians[config], config) for config in configs) for name, configs in tops.items()}


def compare(op: str, seed: int, random_trials: int, model_trials: int, directory: Path, backend,
            rounds: int, top: int = 1) -> dict:
    def job(search, trials):
        return trials, lambda alternation, name: tune_curve(op, search, trials, seed, directory, backend,
                                                            functools.partial(alternation.builder, name))

    runs, alternation = alternate({"random": job("random", random_trials), "model": job("model", model_trials)})
    (random_curve, random_config, random_costs), (model_curve, model_config, model_costs) = runs["random"], runs["model"]
    target = float(random_curve[-1])
    shared = [config for config in model_costs if config in random_costs
              and min(model_costs[config], random_costs[config]) <= target * (1 + NEAR)]
    tops = {"random": top_configs(random_costs, top), "model": top_configs(model_costs, top)}
    again = fastest_again(op, tops, rounds, backend) if rounds else {"random": (None, None), "model": (None, None)}
    # where the fastest config measured again stood among its search's recorded bests (1: the recorded best)
    rank = {name: tops[name].index(config) + 1 if config else None for name, (_, config) in again.items()}
    print(f"{op} seed {seed}: random best {target * 1e3:.4f} ms after {len(random_curve)} trials, model-guided "
          f"{float(model_curve[-1]) * 1e3:.4f} ms after {len(model_curve)}", flush=True)
    return {
        "random_best_config": random_config, "model_best_config": model_config,
        "remeasured_top": top,  # how many of each search's best configs were measured again
        "remeasured_random_best_ms": again["random"][0] and again["random"][0] * 1e3,
        "remeasured_model_best_ms": again["model"][0] and again["model"][0] * 1e3,
        "remeasured_random_best_config": again["random"][1], "remeasured_model_best_config": again["model"][1],
        "remeasured_random_best_rank": rank["random"], "remeasured_model_best_rank": rank["model"],
        "op": op, "seed": seed,
        "random_best_ms": target * 1e3,
        "random_best_ms_at_model_trials": float(random_curve[min(model_trials, len(random_curve)) - 1]) * 1e3,
        "model_best_ms": float(model_curve[-1]) * 1e3,
        "model_trials_to_random_best": trials_to_reach(model_curve, target),
        "model_trials_to_random_best_within_2pct": trials_to_reach(model_curve, target * (1 + TOLERANCE)),
        "random_trials_to_own_best": trials_to_reach(random_curve, target),
        "switches": sum(a[0] != b[0] for a, b in zip(alternation.turns, alternation.turns[1:])),
        "shared_near_best_ratios": [model_costs[c] / random_costs[c] for c in shared],  # model run / random run
        "random_curve_ms": (random_curve * 1e3).tolist(), "model_curve_ms": (model_curve * 1e3).tolist(),
    }


def _median_trials(values: list, limit: int):
    """Median with 'not reached' counted as worse than any number of trials."""
    ranked = sorted(v if v is not None else limit + 1 for v in values)
    middle = ranked[len(ranked) // 2]
    return middle if middle <= limit else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="+", default=["matmul", "conv"], choices=list(OPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--random-trials", type=int, default=512)
    parser.add_argument("--model-trials", type=int, default=128)
    parser.add_argument("--dir", default="build/bench/search", help="one cache per op, strategy and seed")
    parser.add_argument("--remeasure", type=int, default=10, metavar="ROUNDS",
                        help="measure the two searches' best configs again, in alternation, this many times (0: no)")
    parser.add_argument("--top", type=int, default=1, metavar="K",
                        help="measure each search's K best configs again and take the fastest (default 1)")
    parser.add_argument("--json", help="write the rows (with curves) as JSON to this file")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    backend = tuner.resolve_backend("host")
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    rows = [compare(op, seed, args.random_trials, args.model_trials, directory, backend, args.remeasure, args.top)
            for op in args.ops for seed in args.seeds]
    print(f"backend {backend}")
    print(f"{'op':<8} {'seed':>4} {'random best':>11} {'random@' + str(args.model_trials):>11} "
          f"{'model best':>10} {'model trials to random best':>28} {'(within 2%)':>11}")
    for row in rows:
        print(f"{row['op']:<8} {row['seed']:>4} {row['random_best_ms']:>11.4f} "
              f"{row['random_best_ms_at_model_trials']:>11.4f} {row['model_best_ms']:>10.4f} "
              f"{str(row['model_trials_to_random_best'] or 'not reached'):>28} "
              f"{str(row['model_trials_to_random_best_within_2pct'] or 'not reached'):>11}")
    if args.remeasure:
        print(f"the {args.top} best configs of each search measured again, {args.remeasure} rounds in alternation "
              f"(median; the fastest of each search's, and its rank among that search's recorded bests):")
        for row in rows:
            ratio = row["remeasured_model_best_ms"] / row["remeasured_random_best_ms"]
            print(f"{row['op']:<8} {row['seed']:>4} random's {row['remeasured_random_best_ms']:.4f} ms "
                  f"(#{row['remeasured_random_best_rank']}), model-guided's {row['remeasured_model_best_ms']:.4f} ms "
                  f"(#{row['remeasured_model_best_rank']}) (model / random {ratio:.3f})")
    for op in args.ops:
        picked = [r for r in rows if r["op"] == op]
        exact = _median_trials([r["model_trials_to_random_best"] for r in picked], args.model_trials)
        close = _median_trials([r["model_trials_to_random_best_within_2pct"] for r in picked], args.model_trials)
        print(f"{op}: median over {len(picked)} seeds: random best {statistics.median(r['random_best_ms'] for r in picked):.4f} ms "
              f"after {args.random_trials} trials; model-guided best {statistics.median(r['model_best_ms'] for r in picked):.4f} ms "
              f"after {args.model_trials}; model-guided reaches random's best in {exact or 'more than ' + str(args.model_trials)} "
              f"trials ({close or 'more than ' + str(args.model_trials)} within 2 %)")
        shared = sorted(x for r in picked for x in r["shared_near_best_ratios"])
        if shared:
            print(f"{op}: {len(shared)} configs within {NEAR:.0%} of random's best were measured by both runs; their "
                  f"timing in the model-guided run / in the random run: median {statistics.median(shared):.3f}, "
                  f"from {shared[0]:.3f} to {shared[-1]:.3f}")
        if args.remeasure:
            ratios = [r["remeasured_model_best_ms"] / r["remeasured_random_best_ms"] for r in picked]
            print(f"{op}: measured again, the fastest of model-guided's {args.top} best after {args.model_trials} "
                  f"trials / of random's {args.top} best after {args.random_trials}: median "
                  f"{statistics.median(ratios):.3f} ({', '.join(f'{x:.3f}' for x in ratios)})")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"backend": backend.key, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
