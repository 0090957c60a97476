"""The CUDA pieces TVM needs, from the pip packages ``nvidia-cuda-nvrtc``, ``nvidia-cuda-runtime``,
``nvidia-cuda-cccl`` and ``cuda-bindings``, and the GPU of this machine.

TVM's CUDA codegen writes CUDA C++; the kernels are compiled by NVRTC (through ``cuda-bindings``)
when a library is loaded, with the CUDA headers found from ``CUDA_PATH`` or ``nvcc`` on PATH. Its
CUDA runtime (``libtvm_runtime_cuda.so``) needs ``libcudart.so.13`` and the driver's ``libcuda.so.1``;
``import tvm`` silently skips it when one is missing. ``prepare`` points TVM at the pip-installed
headers and loads the runtime, so nobody has to set a variable or a library path by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .device_timing import cuda_version
from .errors import BuildError, NoDeviceError, error_line


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA GPU of this machine."""

    model: str
    compute_capability: str  # "9.0"
    max_threads_per_block: int
    max_shared_memory_per_block: int
    driver_version: str | None = None
    runtime_version: str | None = None

    @property
    def arch(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")


@functools.cache
def prepare() -> str | None:
    """Make TVM find the pip-installed CUDA headers and load its CUDA runtime, once a process.
    Returns why the CUDA runtime cannot be used here (no driver, say), or None when it can."""
    from .device_timing import load_cuda_runtime, use_pip_cuda_headers

    use_pip_cuda_headers()
    import tvm.support.nvcc  # noqa: F401  registers the NVRTC callback that loading such a library calls

    return load_cuda_runtime()


@functools.cache
def detect_gpu() -> GpuInfo | None:
    """This machine's first CUDA GPU; None without a driver or a GPU."""
    if prepare() is not None:
        return None
    import tvm

    device = tvm.cuda(0)
    if not device.exist:
        return None
    return GpuInfo(model=str(device.device_name), compute_capability=str(device.compute_version),
                   max_threads_per_block=int(device.max_threads_per_block),
                   max_shared_memory_per_block=int(device.max_shared_memory_per_block),
                   driver_version=cuda_version(device.driver_version), runtime_version=_runtime_version())


def _runtime_version() -> str | None:
    try:
        from cuda.bindings import runtime

        status, number = runtime.cudaRuntimeGetVersion()
    except Exception:  # the version is only informative
        return None
    return cuda_version(number) if int(status) == 0 else None


def nvrtc_version() -> str | None:
    """The version of the NVRTC that compiles the kernels, e.g. '13.5'; None when it is missing."""
    try:
        from cuda.bindings import nvrtc

        status, major, minor = nvrtc.nvrtcVersion()
    except Exception:  # missing or unloadable NVRTC
        return None
    return f"{major}.{minor}" if int(status) == 0 else None


def require_gpu(what: str) -> GpuInfo:
    """This machine's GPU, for ``what`` (e.g. 'timing code'); a NoDeviceError when it has none."""
    gpu = detect_gpu()
    if gpu is None:
        reason = prepare() or "no CUDA device found"
        raise NoDeviceError(f"{what} for a CUDA target needs an NVIDIA GPU on this machine, and there is none "
                            f"({reason}); 'tuner build' still compiles for it")
    return gpu


def kernel_sources(module) -> list[str]:
    """The CUDA C++ of every CUDA module that ``module`` (an executable or a runtime module) imports."""
    root = getattr(module, "mod", module)
    found, stack = [], [root]
    while stack:
        current = stack.pop()
        if current.kind == "cuda":
            found.append(str(current.inspect_source("")))
        stack.extend(current.imports)
    return found


def compile_kernels(source: str, arch: str, target_format: str = "cubin") -> bytes:
    """Compile ``source`` for ``arch`` ('sm_90') through NVRTC, as loading the library does on a GPU
    machine, so that an error shows at build time; returns the cubin (or PTX)."""
    prepare()
    from tvm.support import nvcc

    try:
        from cuda.bindings import nvrtc  # noqa: F401
    except ImportError:
        raise BuildError("CUDA targets need NVRTC and the CUDA headers: pip install 'onnx-autotuner[cuda]'") from None

    try:
        return bytes(nvcc.compile_cuda(source, target_format=target_format, arch=arch, compiler="nvrtc"))
    except Exception as err:  # NVRTC's log: the first line that names an error
        lines = [line.strip() for line in str(err).splitlines() if "error" in line]
        raise BuildError(f"NVRTC failed to compile the kernels for {arch}: "
                         f"{lines[1] if len(lines) > 1 else error_line(err, last=True)}") from err
