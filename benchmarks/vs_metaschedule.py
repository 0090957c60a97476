"""Our tuner against TVM MetaSchedule on the same model, with the same trial budget.

    python -m benchmarks.vs_metaschedule --model resnet18 --trials 1500 [--steps ours metaschedule compare]

* ``ours``: ``tuner.tune`` with model-guided search and the gradient scheduler, into its own cache;
* ``metaschedule``: ``tune_relax`` with its defaults (XGBoost cost model, evolutionary search,
  gradient task scheduler, 64 trials per iteration) on the same fused Relax module, into its own
  database. Its build workers use a builder that skips the 22 s ``tvm.s_tir.tensor_intrin`` import
  (with the default one, builds time out on 2 busy cores); that is the only change.
  MetaSchedule gets the module without our ``layout_free_buffers`` marks, as its defaults would
  see it, so it does not repack weights at build time. Its runner keeps its default timing, with
  warm caches (``EvaluatorConfig.enable_cpu_cache_flush`` is False), where ours flushes them before
  each timed run (the backend's ``cold`` timing); the built models are timed alike in ``compare``;
* ``compare``: builds both (ours with ``tuner.build``, MetaSchedule's with
  ``MetaScheduleApplyDatabase``) and times them and ONNX Runtime in the same run, on the same
  inputs and thread count, with each one's largest output difference from ONNX Runtime.

Each tuning step writes its wall time to ``--dir``; ``compare`` reads it. TVM_NUM_THREADS is set to
the core count for this process and its workers, so that MetaSchedule's runner times with every
core as ours does (TVM's own default here is one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import tuner
from benchmarks.models import build as build_model
from tuner.bench import (batch_timer, interleaved_s, max_abs_difference, model_batch_timer, onnxruntime_session,
                         random_inputs)


def fast_build(mod, target, _params):
    """MetaSchedule's default build minus its ``tvm.s_tir.tensor_intrin`` import (runs in its workers)."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target)


def metaschedule_module(model, backend):
    """Our fused module of ``model`` with the ``layout_free_buffers`` marks removed."""
    import tvm

    from tuner.tasks import fuse

    module = fuse(model.relax_module(), backend.tvm_target())
    for global_var, func in module.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None and "layout_free_buffers" in func.attrs:
            module.update_func(global_var, func.without_attr("layout_free_buffers"))
    return module


def tune_ours(model, backend, trials: int, directory: Path, seed: int) -> dict:
    settings = tuner.TuneSettings(trials=trials, search="model", scheduler="gradient", seed=seed)
    started = time.perf_counter()
    with tuner.Cache(directory / "ours.sqlite") as cache:
        report = tuner.tune(model, backend, cache, settings)
    print(report.table())
    return {"trials": report.trials, "measured": report.measured, "tune_s": time.perf_counter() - started}


def tune_metaschedule(model, backend, trials: int, directory: Path, seed: int) -> dict:
    from tvm.s_tir import meta_schedule as ms

    module = metaschedule_module(model, backend)
    builder = ms.builder.LocalBuilder(f_build=fast_build, max_workers=backend.num_cores)
    started = time.perf_counter()
    database = ms.relax_integration.tune_relax(module, params={}, target=backend.tvm_target(),
                                               work_dir=str(directory / "metaschedule"),
                                               max_trials_global=trials, builder=builder, seed=seed)
    return {"trials": trials, "records": len(database), "tune_s": time.perf_counter() - started}


def build_metaschedule(model, backend, directory: Path):
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    target = backend.tvm_target()
    database = ms.database.JSONDatabase(work_dir=str(directory / "metaschedule"))
    module = metaschedule_module(model, backend)
    with target, database, tvm.transform.PassContext(opt_level=3):
        applied = relax.transform.MetaScheduleApplyDatabase()(module)
    return tvm.compile(applied, target=target)


def compare(model, backend, directory: Path, repeat: int = 7, min_repeat_s: float = 0.2) -> dict:
    from tuner.runtime import CompiledModel

    with tuner.Cache(directory / "ours.sqlite") as cache:
        ours = tuner.build(model, backend, cache).runner()
    theirs = CompiledModel(build_metaschedule(model, backend, directory), model.inputs, model.output_names,
                           backend.num_cores)
    arrays = random_inputs(model.inputs, seed=0)
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    session = onnxruntime_session(model, backend.num_cores)
    reference = session.run(list(model.output_names), feeds)
    times = interleaved_s({"ours": model_batch_timer(ours, arrays, min_repeat_s),
                           "metaschedule": model_batch_timer(theirs, arrays, min_repeat_s),
                           "onnxruntime": batch_timer(lambda: session.run(None, feeds), min_repeat_s)}, repeat)
    row = {f"{name}_ms": statistics.median(seconds) * 1e3 for name, seconds in times.items()}
    row.update({"ours_max_abs_err": max_abs_difference(ours.run(*arrays), reference),
           "metaschedule_max_abs_err": max_abs_difference(theirs.run(*arrays), reference)})
    row["metaschedule_over_ours"] = row["metaschedule_ms"] / row["ours_ms"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--trials", type=int, default=1500, help="total trials for each tuner")
    parser.add_argument("--steps", nargs="+", default=["ours", "metaschedule", "compare"],
                        choices=["ours", "metaschedule", "compare"])
    parser.add_argument("--dir", default="build/bench/vs_metaschedule")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    backend = tuner.resolve_backend("host")
    os.environ["TVM_NUM_THREADS"] = str(backend.num_cores)
    model = tuner.load(build_model(args.model))
    steps = {"ours": tune_ours, "metaschedule": tune_metaschedule}
    for step in args.steps:
        if step in steps:
            result = steps[step](model, backend, args.trials, directory, args.seed)
            (directory / f"{step}.json").write_text(json.dumps(result, indent=2))
    if "compare" not in args.steps:
        return
    row = compare(model, backend, directory)
    tuned = {step: json.loads((directory / f"{step}.json").read_text()) for step in steps}
    row.update({f"{step}_tune_s": tuned[step]["tune_s"] for step in steps})
    row.update({"model": args.model, "backend": backend.key, "trials": args.trials})
    (directory / "compare.json").write_text(json.dumps(row, indent=2))
    print(f"backend {backend}; {args.model}, {args.trials} trials each")
    print(f"{'':<14} {'latency ms':>10} {'tuning s':>9} {'max|err| vs ORT':>16}")
    print(f"{'ours':<14} {row['ours_ms']:>10.3f} {row['ours_tune_s']:>9.0f} {row['ours_max_abs_err']:>16.2g}")
    print(f"{'metaschedule':<14} {row['metaschedule_ms']:>10.3f} {row['metaschedule_tune_s']:>9.0f} "
          f"{row['metaschedule_max_abs_err']:>16.2g}")
    print(f"{'onnxruntime':<14} {row['onnxruntime_ms']:>10.3f}")
    print(f"metaschedule latency / ours: {row['metaschedule_over_ours']:.2f}")


if __name__ == "__main__":
    main()
