"""Time a built model on a remote device and check its outputs against ONNX Runtime run here.

The model is built here for the device's backend (cross-compiled where the target
is another machine's), uploaded, loaded into a Relax VM on the device and timed there
by TVM's evaluator. ONNX Runtime runs here on the same inputs for the outputs only:
its time on this machine says nothing of the device's.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile

from .bench import BenchReport, max_abs_difference, max_relative_difference, onnxruntime_session, random_inputs
from .build import build
from .profile import TaskTime
from .remote import RemoteSettings, request_session
from .runtime import _to_numpy
from .toolchain import find_compiler


def bench_remote(model, backend, cache, remote: RemoteSettings, repeat: int = 7, min_repeat_ms: int = 100,
                 seed: int = 0, cc: str | None = None, profile: bool = False) -> BenchReport:
    """Build ``model`` from ``cache`` for ``backend`` and time it on a device of ``remote``; with
    ``profile``, also each task's kernel (``profile_remote``)."""
    built = build(model, backend, cache)
    arrays = random_inputs(model.inputs, seed)
    session = onnxruntime_session(model, backend.num_cores)
    references = session.run(list(model.output_names), {spec.name: a for spec, a in zip(model.inputs, arrays)})
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as folder:
        path = str(built.export(os.path.join(folder, "model.so"), cc=find_compiler(backend.target, cc)))
        outputs, times_ms = _run_on_device(path, arrays, remote, repeat, min_repeat_ms)
    coverage = built.coverage
    return BenchReport(
        model=model.name, backend=backend.key, tuner_ms=statistics.median(times_ms), onnxruntime_ms=None,
        max_abs_err=max_abs_difference(outputs, references),
        max_rel_err=max_relative_difference(outputs, references),
        tasks=coverage.tasks, tasks_tuned=coverage.tasks_tuned, flops_share_tuned=coverage.flops_share_tuned,
        num_threads=backend.num_cores, tuner_repeats_ms=times_ms, device_key=remote.key,
        profile=profile_remote(model, backend, cache, remote, cc) if profile else ())


def _run_on_device(path: str, arrays, remote: RemoteSettings, repeat: int, min_repeat_ms: int):
    """The outputs of the library at ``path`` on ``arrays`` and its times (ms) on a device; the session
    ends on return, so that the device is free again."""
    import tvm
    from tvm import relax

    session = request_session(remote)
    session.upload(path)
    device = session.cpu(0)
    vm = relax.VirtualMachine(session.load_module(os.path.basename(path)), device)
    tensors = [tvm.runtime.tensor(array, device) for array in arrays]
    outputs = _to_numpy(vm["main"](*tensors))
    vm.set_input("main", *tensors)
    timer = vm.time_evaluator("invoke_stateful", device, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return outputs, tuple(float(t) * 1e3 for t in timer("main").results)


def profile_remote(model, backend, cache, remote: RemoteSettings, cc: str | None = None) -> tuple[TaskTime, ...]:
    """Each task's kernel, with the schedule the build gives it, timed alone on a device of ``remote``
    (as tuning times it) and counted as often as the model calls it, slowest first. TVM's VM cannot
    time each call of a model over RPC, so what runs between the kernels is not in these rows."""
    import search_spaces

    from .builder import LocalBuilder
    from .measure import MeasureSettings, measure
    from .rpc_runner import RPCRunner
    from .layout_plan import planned_partition

    settings = MeasureSettings(cc=cc, confirm_runs=0)
    timed = []
    with LocalBuilder(backend, settings) as builder, RPCRunner(backend, settings, remote) as runner:
        for task in planned_partition(model, backend, cache)[0].tasks:
            space = search_spaces.space_for(task.func, backend.tvm_target())
            record = cache.best(backend.key, task.workload_key) if cache is not None else None
            config, source = _schedule_config(space, record)
            (result,) = measure(builder, runner, task, [config])
            seconds = result.mean_s * task.weight if result.ok else math.nan
            timed.append((task, seconds, source, record.result.mean_s * 1e3 if source == "cache" else None))
    total = sum(seconds for _, seconds, _, _ in timed if not math.isnan(seconds)) or 1.0
    rows = [TaskTime(task.name, task.weight, seconds * 1e3, seconds / total, source,
                     task.flops * task.weight / seconds / 1e9 if seconds > 0 else None, tuned_ms)
            for task, seconds, source, tuned_ms in timed]
    return tuple(sorted(rows, key=lambda row: 0.0 if math.isnan(row.ms_per_run) else -row.ms_per_run))


def _schedule_config(space, record):
    """The config a build applies (``build.schedule_task``): the record's, or the default."""
    import search_spaces

    if record is not None:
        try:
            return search_spaces.Config.from_json(record.config), "cache"
        except search_spaces.InvalidConfigError:
            pass
    return space.default_config(), "default"
