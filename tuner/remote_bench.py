"""Time a built model on a remote device and check its outputs against ONNX Runtime run here.

The model is built here for the device's backend (cross-compiled where the target
is another machine's), uploaded, loaded into a Relax VM on the device and timed there
by TVM's evaluator. ONNX Runtime runs here on the same inputs for the outputs only:
its time on this machine says nothing of the device's.
"""

from __future__ import annotations

import os
import statistics
import tempfile

from .bench import BenchReport, max_abs_difference, max_relative_difference, onnxruntime_session, random_inputs
from .build import build
from .remote import RemoteSettings, request_session
from .runtime import _to_numpy
from .toolchain import find_compiler


def bench_remote(model, backend, cache, remote: RemoteSettings, repeat: int = 7, min_repeat_ms: int = 100,
                 seed: int = 0, cc: str | None = None) -> BenchReport:
    """Build ``model`` from ``cache`` for ``backend`` and time it on a device of ``remote``."""
    import tvm
    from tvm import relax

    built = build(model, backend, cache)
    arrays = random_inputs(model.inputs, seed)
    session = onnxruntime_session(model, backend.num_cores)
    references = session.run(list(model.output_names), {spec.name: a for spec, a in zip(model.inputs, arrays)})
    with tempfile.TemporaryDirectory(prefix="tuner-bench-") as folder:
        path = str(built.export(os.path.join(folder, "model.so"), cc=find_compiler(backend.target, cc)))
        device_session = request_session(remote)
        device_session.upload(path)
        device = device_session.cpu(0)
        vm = relax.VirtualMachine(device_session.load_module("model.so"), device)
    tensors = [tvm.runtime.tensor(array, device) for array in arrays]
    outputs = _to_numpy(vm["main"](*tensors))
    vm.set_input("main", *tensors)
    timer = vm.time_evaluator("invoke_stateful", device, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    times_ms = tuple(float(t) * 1e3 for t in timer("main").results)
    coverage = built.coverage
    return BenchReport(
        model=model.name, backend=backend.key, tuner_ms=statistics.median(times_ms), onnxruntime_ms=None,
        max_abs_err=max_abs_difference(outputs, references),
        max_rel_err=max_relative_difference(outputs, references),
        tasks=coverage.tasks, tasks_tuned=coverage.tasks_tuned, flops_share_tuned=coverage.flops_share_tuned,
        num_threads=backend.num_cores, tuner_repeats_ms=times_ms, device_key=remote.key)
