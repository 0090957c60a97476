"""The ``tuner`` command line. Every user error is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager

from .backend import DEFAULT_TIMING, TIMINGS
from .budget import DEFAULT_MAX_S, DEFAULT_S_PER_TASK
from .cli_devices import add_device_args, command_backend, export_candidates, remote_runner, remote_settings
from .errors import TunerError
from .layout import LAYOUTS
from .measure import MeasureSettings
from .progress import format_seconds
from .scheduler import SCHEDULERS
from .strategy import SEARCHES
from .tune import TuneSettings

EXIT_USAGE = 2


def _add_model_args(parser) -> None:
    parser.add_argument("model", help="path of the ONNX model")
    parser.add_argument("--verbose", action="store_true", help="let TVM's and ONNX Runtime's own log lines through")
    parser.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                        help="shape of an input whose dimensions the model leaves open (repeatable)")
    parser.add_argument("--target", default="host",
                        help="'host' (detect this CPU, the default) or a TVM target JSON dict")
    parser.add_argument("--timing", default=DEFAULT_TIMING, choices=TIMINGS,
                        help="how candidates are timed, and so which records apply: 'cold' flushes the CPU caches "
                             "of the weights before each run, as in the model; 'hot' reruns on warm caches "
                             f"(caches tuned before this option existed are hot; default {DEFAULT_TIMING})")
    parser.add_argument("--conv-layout", default="nchw", choices=list(LAYOUTS),
                        help="the convolutions' activation layout: nchw (default), or blocked nchw8c/nchw16c kept "
                             "from one convolution to the next, or auto: chosen per stage of the model from "
                             "what tuning measured in each; tune and build with the same one")


def _add_cache_arg(parser) -> None:
    parser.add_argument("--cache", metavar="PATH", help="tuning-log database (default: per-user cache file)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuner", description="Auto-tune ONNX models with TVM.")
    commands = parser.add_subparsers(dest="command", required=True)
    tasks = commands.add_parser("tasks", help="list the fused subgraphs (tasks) of a model")
    _add_model_args(tasks)
    tasks.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_tune_args(commands.add_parser("tune", help="measure schedules for every task and store them in the cache"))
    build = commands.add_parser("build", help="compile a model from the tuning cache (measures nothing)")
    _add_model_args(build)
    _add_cache_arg(build)
    build.add_argument("-o", "--output", required=True, metavar="OUT.so", help="shared library to write")
    add_device_args(build)
    bench = commands.add_parser("bench", help="build from the cache and compare with ONNX Runtime")
    _add_model_args(bench)
    _add_cache_arg(bench)
    bench.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    bench.add_argument("--repeat", type=int, default=7, help="timed repeats of each side (default 7)")
    bench.add_argument("--profile", action="store_true", help="also show the time each task takes in one run")
    add_device_args(bench)
    report = commands.add_parser("report", help="a page on the tuned model: speed and correctness against ONNX "
                                 "Runtime, time per layer, tuning curve")
    _add_model_args(report)
    _add_cache_arg(report)
    report.add_argument("-o", "--output", metavar="REPORT.html", help="the HTML page to write")
    report.add_argument("--json", metavar="FILE", help="write the same data as JSON to FILE")
    report.add_argument("--repeat", type=int, default=7, help="timed repeats of each side (default 7)")
    _add_cache_commands(commands.add_parser("cache", help="inspect, export or import the tuning-log cache"))
    return parser


def _add_tune_args(tune) -> None:
    _add_model_args(tune)
    _add_cache_arg(tune)
    tune.add_argument("--time", metavar="DURATION", help="wall-clock budget, e.g. 90s, 20m, 1h (default without "
                      f"--trials: {DEFAULT_S_PER_TASK:g} s a task, at most {DEFAULT_MAX_S / 60:g} min)")
    tune.add_argument("--trials", type=int, help="total trials for this model on this backend, counting records "
                      "already in the cache (with --time: whichever ends first)")
    tune.add_argument("--search", default=TuneSettings.search, choices=list(SEARCHES),
                      help=f"cost-model-guided search or random sampling (default {TuneSettings.search})")
    tune.add_argument("--search-option", action="append", default=[], metavar="NAME=VALUE",
                      help="a setting of the search (repeatable), e.g. population=256; an unknown name lists them")
    tune.add_argument("--scheduler", default=TuneSettings.scheduler, choices=list(SCHEDULERS),
                      help=f"how the budget is spread over tasks (default {TuneSettings.scheduler})")
    tune.add_argument("--cost-model", default="xgb", metavar="KIND",
                      help="the model that ranks candidates for model-guided search: xgb (default) or random")
    tune.add_argument("--load-cost-model", metavar="FILE", help="start from a saved cost model: it ranks "
                      "candidates until this run has measured enough to retrain it")
    tune.add_argument("--save-cost-model", metavar="FILE.json", help="save the cost model trained in this run")
    tune.add_argument("--batch-size", type=int, help="candidates measured per batch (default 8 for model-guided "
                      "search, 16 for random)")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--build-timeout", type=float, default=MeasureSettings.build_timeout_s, metavar="SECONDS",
                      help="a candidate whose compilation takes longer is recorded as a timeout "
                           f"(default {MeasureSettings.build_timeout_s:g}; raise it on a slow machine)")
    tune.add_argument("--run-timeout", type=float, default=MeasureSettings.run_timeout_s, metavar="SECONDS",
                      help=f"likewise for running and timing one candidate (default {MeasureSettings.run_timeout_s:g})")
    tune.add_argument("--confirm-runs", type=int, default=MeasureSettings.confirm_runs, metavar="N",
                      help=f"times a candidate timed within {MeasureSettings.confirm_within * 100:g}%% of its task's "
                           f"best is run again, so that the best is not one lucky run (default "
                           f"{MeasureSettings.confirm_runs}; 0 tunes faster)")
    tune.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_args(tune)
    tune.add_argument("--export-candidates", metavar="DIR", help="instead of timing here, build a batch of "
                      "candidates per task into DIR for a device this machine cannot reach, named by --device-key "
                      "(README: Offline devices)")


def _add_cache_commands(cache) -> None:
    actions = cache.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="records per backend and task")
    _add_cache_arg(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = actions.add_parser("export", help="write records as JSON lines")
    _add_cache_arg(export)
    export.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    export.add_argument("--backend", help="only records of this backend key")
    importing = actions.add_parser("import", help="read records from a JSON-lines export, or a device's timings "
                                   "of candidates from --export-candidates")
    _add_cache_arg(importing)
    importing.add_argument("file", help="export file to read, or the folder of exported candidates")


def _load_model(args):
    from .model import load, parse_shape_arg

    shapes = dict(parse_shape_arg(text) for text in args.shape)
    return load(args.model, shapes=shapes)


@contextmanager
def _open_cache(path):
    from .cache import Cache

    cache = Cache(path)
    try:
        yield cache
    finally:
        cache.close()


def _cmd_tasks(args) -> None:
    from .provenance import describe
    from .tasks import partition

    model, backend = _load_model(args), command_backend(args)
    parts = partition(model, backend)
    if args.json:
        print(json.dumps({"model": model.name, "backend": backend.key,
                          "tasks": [task.to_json() for task in parts.tasks]}, indent=2))
        return
    total = parts.total_flops or 1.0
    print(f"{model.name}: {len(parts.tasks)} tasks, {parts.total_flops / 1e9:.3f} GFLOP per run, backend {backend}")
    print(f"{'#':>3}  {'task':<44} {'weight':>6} {'MFLOP':>10} {'share':>6}  workload key")
    for index, task in enumerate(parts.tasks):
        share = task.flops * task.weight / total
        print(f"{index:>3}  {task.name[:44]:<44} {task.weight:>6} {task.flops / 1e6:>10.2f} {share:>6.1%}  "
              f"{task.workload_key}")
        print(f"{'':>5}ONNX nodes: {describe(task.nodes)}")


def _cmd_tune(args) -> None:
    from .tune import tune

    settings = TuneSettings(trials=args.trials, time_budget_s=parse_duration(args.time) if args.time else None,
                            search=args.search, scheduler=args.scheduler, batch_size=args.batch_size,
                            seed=args.seed, search_options=dict(_option(text) for text in args.search_option))
    strategy = settings.create_strategy()
    measure_settings = MeasureSettings(build_timeout_s=args.build_timeout, run_timeout_s=args.run_timeout,
                                       confirm_runs=args.confirm_runs, cc=args.cc)
    cost_model = _cost_model(args, strategy)
    model = _load_model(args)
    if args.export_candidates:
        export_candidates(args, model, settings, strategy, cost_model, measure_settings)
        return
    with _open_cache(args.cache) as cache, remote_runner(args, measure_settings) as (backend, runner):
        report = tune(model, backend, cache, settings, strategy=strategy, cost_model=cost_model, runner=runner,
                      measure_settings=measure_settings, progress=not args.quiet)
    print(report.table())
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report.to_json(), stream, indent=2)
    if args.save_cost_model:
        cost_model.save(args.save_cost_model, backend=backend.key)
        print(f"saved the cost model to {args.save_cost_model}")


def _option(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise TunerError(f"--search-option {text!r} is not of the form NAME=VALUE (e.g. population=256)")
    return name, value


def _cost_model(args, strategy):
    """The cost model the command line asks for (loaded, or a new one of its kind), checked before any
    tuning; None for a search that uses none."""
    import costmodel

    if strategy.training() is None:
        if args.load_cost_model or args.save_cost_model:
            raise TunerError(f"--load-cost-model and --save-cost-model need a search that uses a cost model "
                             f"(--search model), not {strategy.name!r}")
        return None
    if args.save_cost_model and args.cost_model == "xgb" and \
            not args.save_cost_model.endswith(costmodel.model.BOOSTER_SUFFIXES):
        raise TunerError(f"--save-cost-model {args.save_cost_model}: an xgb cost model file ends in "
                         f"{' or '.join(costmodel.model.BOOSTER_SUFFIXES)}")
    if args.load_cost_model:
        return costmodel.load_cost_model(args.load_cost_model)
    return costmodel.create_cost_model(args.cost_model, seed=args.seed)


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '20m' or '1.5h'."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise TunerError(f"--time {text!r} is not a positive duration such as 90s, 20m or 1h")
    return seconds


def _cmd_build(args) -> None:
    from .build import build

    from .toolchain import find_compiler

    model = _load_model(args)
    with _open_cache(args.cache) as cache:
        backend = command_backend(args, cache)
        cc = find_compiler(backend.target, args.cc)
        built = build(model, backend, cache)
        hint = _other_timing_hint(cache, backend, built.coverage.tasks - built.coverage.tasks_tuned)
    path = built.export(args.output, cc=cc)
    print(f"built {model.name} for {backend.key} -> {path}")
    print(built.coverage.line())
    if built.layout_plan is not None:
        print(built.layout_plan.describe())
    if hint:
        print(hint)


def _cmd_bench(args) -> None:
    from .bench import bench

    if args.repeat < 1:
        raise TunerError(f"--repeat must be at least 1, got {args.repeat}")
    model = _load_model(args)
    with _open_cache(args.cache) as cache:
        backend = command_backend(args, measure=True)
        if args.rpc:
            from .remote_bench import bench_remote

            report = bench_remote(model, backend, cache, remote_settings(args), repeat=args.repeat, cc=args.cc,
                                  profile=args.profile)
        else:
            report = bench(model, backend, cache, repeat=args.repeat, profile=args.profile)
        hint = _other_timing_hint(cache, backend, report.tasks - report.tasks_tuned)
    print(report.table())
    if hint:
        print(hint)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report.to_json(), stream, indent=2)


def _cmd_report(args) -> None:
    from .report import gather
    from .report_html import render

    if not args.output and not args.json:
        raise TunerError("say where the report goes: -o REPORT.html and/or --json FILE")
    if args.repeat < 1:
        raise TunerError(f"--repeat must be at least 1, got {args.repeat}")
    model = _load_model(args)
    with _open_cache(args.cache) as cache:
        backend = command_backend(args, measure=True)
        report = gather(model, backend, cache, repeat=args.repeat)
    if args.output:
        with open(args.output, "w") as stream:
            stream.write(render(report))
        print(f"wrote {args.output}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report.to_json(), stream, indent=2)
        print(f"wrote {args.json}")
    print(f"{model.name}: {report.tuner_ms:.3f} ms, ONNX Runtime {report.onnxruntime_ms:.3f} ms "
          f"({report.speedup:.2f}x); {report.tasks_tuned}/{report.tasks} tasks tuned")


def _other_timing_hint(cache, backend, untuned: int) -> str | None:
    """A line for a build with untuned tasks from a cache that holds records of this machine timed the
    other way (a cache tuned before cold timing was the default holds hot ones)."""
    import dataclasses

    if not untuned:
        return None
    for timing in TIMINGS:
        count = cache.count(dataclasses.replace(backend, timing=timing).key) if timing != backend.timing else 0
        if count:
            return (f"the cache also holds {count} records of this machine timed {timing}: "
                    f"pass --timing {timing} to build from them")
    return None


def _cmd_cache(args) -> None:
    with _open_cache(args.cache) as cache:
        if args.action == "list":
            rows = cache.summary()
            if args.json:
                print(json.dumps({"cache": str(cache.path), "entries": rows}, indent=2))
                return
            print(f"{cache.path}: {cache.count()} records")
            for row in rows:
                best = format_seconds(row["best_s"]) if row["best_s"] is not None else "-"
                print(f"  {row['backend_key']}  {row['task_name'][:40]:<40} {row['records']:>6} records "
                      f"{row['errors']:>5} errors  best {best}")
        elif args.action == "export":
            _export(cache, args)
        else:
            _import(cache, args.file)


def _export(cache, args) -> None:
    if args.output == "-":
        count = cache.export_jsonl(sys.stdout, backend_key=args.backend)
    else:
        with open(args.output, "w") as stream:
            count = cache.export_jsonl(stream, backend_key=args.backend)
    print(f"exported {count} records", file=sys.stderr)


def _import(cache, path) -> None:
    from .offline import import_results, is_export

    if is_export(path):
        print(import_results(cache, path).summary())
        return
    try:
        stream = open(path)
    except OSError as err:
        raise TunerError(f"cannot read {path}: {err.strerror}") from None
    with stream:
        new, known = cache.import_jsonl(stream, source=path)
    print(f"imported {new} new records into {cache.path} ({known} were already there)")


_COMMANDS = {"tasks": _cmd_tasks, "tune": _cmd_tune, "build": _cmd_build, "bench": _cmd_bench,
             "report": _cmd_report, "cache": _cmd_cache}


# commands whose output is a table or a file: TVM's and ONNX Runtime's log lines stay out of it
_QUIET = ("tasks", "build", "bench", "report")


def main(argv=None) -> int:
    from .quiet import quiet

    args = _parser().parse_args(argv)
    try:
        with quiet(verbose=getattr(args, "verbose", False) or args.command not in _QUIET):
            _COMMANDS[args.command](args)
    except TunerError as err:
        print(f"tuner: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tuner: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
