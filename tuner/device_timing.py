"""How a built candidate is checked and timed on its device: numpy and TVM's runtime only.

Nothing here imports the rest of ``tuner`` or TVM's compiler, so the same file serves the
measuring workers here, remote devices through RPC sessions, and the offline measuring
script that ``tuner tune --export-candidates`` copies beside the candidates for a device
with TVM's runtime alone (``offline_measure.py``).
"""

from __future__ import annotations

import math
import os

import numpy as np

# A user's CUDA_PATH (a full toolkit) wins over the pip headers; this variable then stays untouched.
_NVRTC_OPTIONS_VARIABLE = "TVM_CUDA_NVRTC_EXTRA_OPTS"

# Before each cold run on a GPU, TVM's timer copies one buffer of this size into another on the
# device, which evicts the L2 cache (60 MB on an H200) so that weights come from memory as in a model.
GPU_FLUSH_BYTES = 256 << 20


def use_pip_cuda_headers() -> None:
    """Point NVRTC at the CUDA headers of the pip packages (``CUDA_PATH``, and CCCL's folder), unless
    the user's ``CUDA_PATH`` (a full toolkit) is set."""
    if "CUDA_PATH" in os.environ:
        return
    try:
        from cuda import pathfinder
    except ImportError:  # no cuda-bindings: TVM looks for nvcc on PATH
        return
    include = pathfinder.find_nvidia_header_directory("cudart")
    if include is None:
        return
    # TVM adds CUDA_PATH/include; the pip layout keeps CCCL (cuda/std/...) in include/cccl
    os.environ["CUDA_PATH"] = os.path.dirname(include)
    cccl = pathfinder.find_nvidia_header_directory("cccl")
    options = os.environ.get(_NVRTC_OPTIONS_VARIABLE, "")
    if cccl is not None and f"-I{cccl}" not in options.split():
        os.environ[_NVRTC_OPTIONS_VARIABLE] = f"{options} -I{cccl}".strip()


def register_cuda_compiler(arch: str) -> None:
    """Let TVM's CUDA runtime compile the kernels of a library built on a machine without a GPU (they
    travel as CUDA C++ and are compiled when the library is loaded) with NVRTC for ``arch``, with TVM's
    runtime alone: TVM's own callback asks the compiler's target for the arch."""
    import tvm_ffi
    from tvm.support import nvcc

    use_pip_cuda_headers()

    def compile_cuda(code):
        return nvcc.compile_cuda(code, target_format="cubin", arch=arch, compiler="nvrtc")

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_cuda, override=True)


def load_cuda_runtime() -> str | None:
    """Load TVM's CUDA runtime (``libtvm_runtime_cuda.so``, which ``import tvm`` skips silently when
    ``libcudart.so.13`` is not on the library path) with the pip package's libcudart. Returns why it
    cannot be loaded (no driver, say), or None once it is."""
    from pathlib import Path

    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    if "tvm_runtime_cuda" in _LOADED_LIBS:
        return None
    missing = None
    try:
        from cuda import pathfinder

        pathfinder.load_nvidia_dynamic_lib("cudart")  # libcudart.so.13, then found by its soname
    except Exception as err:  # not installed: the system's library may still do
        missing = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
    try:
        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(package="tvm", target_name="tvm_runtime_cuda",
                                                           extra_lib_paths=[runtime_dir], mode="RTLD_LOCAL")
    except (OSError, RuntimeError) as err:
        return missing or str(err).strip().splitlines()[-1]
    return None


def cpu_model() -> str:
    """The CPU's marketing name, e.g. 'AMD EPYC 9R14', or the machine type when unknown."""
    import platform

    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cuda_version(number) -> str | None:
    """CUDA's integer versions: 13020 -> '13.2'."""
    if number is None or int(number) <= 0:
        return None
    return f"{int(number) // 1000}.{int(number) % 1000 // 10}"


def random_arrays(specs, seed: int) -> list[np.ndarray]:
    """Arrays for ``specs`` ((shape, dtype) pairs): normal floats, zeros for integers (always valid
    indices). The same seed gives the same arrays on every machine with numpy's PCG64."""
    rng = np.random.default_rng(seed)
    arrays = []
    for shape, dtype in specs:
        dtype = np.dtype(dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal([int(d) for d in shape]).astype(dtype))
        else:
            arrays.append(np.zeros([int(d) for d in shape], dtype))
    return arrays


def prepacked(module, tensors: list, indices, packed, device) -> list:
    """``tensors`` with those at ``indices`` replaced by what the library's ``prepack`` makes of them,
    tensors of the ``packed`` (shape, dtype)s (made once, untimed)."""
    import tvm

    if not indices:
        return tensors
    originals = [tensors[index] for index in indices]
    outputs = [tvm.runtime.tensor(np.zeros(shape, dtype), device) for shape, dtype in packed]
    module["prepack"](*originals, *outputs)
    tensors = list(tensors)
    for index, tensor in zip(indices, outputs):
        tensors[index] = tensor
    return tensors


def check_outputs(tensors, expected: dict, rtol: float, atol: float) -> str | None:
    """Why the outputs at the indices of ``expected`` differ from it; None when they match."""
    for index, want in expected.items():
        got = tensors[index].numpy()
        scale = float(np.nanmax(np.abs(want))) if want.size else 0.0
        if not np.allclose(got, want, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True):
            worst = float(np.nanmax(np.abs(got.astype(np.float64) - want)))
            return f"output {index} differs from the unscheduled function by up to {worst:.3g}"
    return None


def check_and_time(module, device, tensors, expected: dict | None, timing: dict) -> tuple[list | None, str | None]:
    """Run ``module``'s ``main`` once and compare its outputs with ``expected`` (when given), then time
    it as ``timing`` says (``TimingOptions.to_json``: cold or hot, repeats, tolerances). Returns the
    seconds of the runs, or None and why the outputs differ. TVM's errors propagate."""
    if expected:
        module["main"](*tensors)
        mismatch = check_outputs(tensors, expected, timing["rtol"], timing["atol"])
        if mismatch:
            return None, mismatch
    warm_up(module, device, tensors, timing.get("warm_up_ms", 0))
    if timing["cold"]:
        return flushed_costs(module, device, tensors, timing["repeat"], timing["min_repeat_ms"],
                             timing["max_flushed_runs"]), None
    return repeated_costs(module, device, tensors, timing["repeat"], timing["min_repeat_ms"]), None


def warm_up(module, device, tensors, milliseconds: float) -> None:
    """Run ``module`` back to back for about ``milliseconds`` before it is timed, untimed: a core that
    has idled (while candidates compile) runs its first few milliseconds of work up to 2.5 times
    slower, which otherwise lands on whichever candidate a batch times first (docs/benchmarks.md)."""
    if milliseconds > 0:
        module.time_evaluator("main", device, number=1, repeat=1, min_repeat_ms=math.ceil(milliseconds))(*tensors)


def repeated_costs(module, device, tensors, repeat: int, min_repeat_ms: int) -> list[float]:
    """Seconds per run of ``repeat`` repeats of at least ``min_repeat_ms`` each, on warm caches."""
    timer = module.time_evaluator("main", device, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return [float(c) for c in timer(*tensors).results]


def flushed_costs(module, device, tensors, repeat: int, min_repeat_ms: int, max_runs: int) -> list[float]:
    """Seconds of single runs on cold caches: on a CPU the caches of every argument but the first (the
    input, which the previous layer has just written) are flushed, on a GPU the whole L2. As many runs
    as fill ``repeat`` x ``min_repeat_ms`` (one run estimates a run's time), at least ``repeat`` and at
    most ``max_runs``."""
    gpu = device.dlpack_device_type() != 1  # kDLCPU

    def timer(runs):
        if gpu:
            return module.time_evaluator("main", device, number=1, repeat=runs, min_repeat_ms=0,
                                         cache_flush_bytes=GPU_FLUSH_BYTES)
        return module.time_evaluator("main", device, number=1, repeat=runs, min_repeat_ms=0,
                                     f_preproc="cache_flush_cpu_non_first_arg")

    estimate = float(timer(1)(*tensors).results[0])
    budget_s = repeat * min_repeat_ms / 1e3
    runs = min(max_runs, max(repeat, math.ceil(budget_s / max(estimate, 1e-9))))
    return [float(c) for c in timer(runs)(*tensors).results]
