"""The backend of a CUDA target: its architecture, the GPU (when this machine has it) and the versions
of what compiles and runs the kernels, all of which change what the fastest code is."""

from __future__ import annotations

import json
import re

from search_spaces.cuda import DEFAULT_SHARED_MEMORY_BYTES

from .errors import TargetError, error_line

_ARCH = re.compile(r"sm_(\d+)(\d)([a-z]?)")


def compute_capability(arch: str) -> str:
    """'sm_90' -> '9.0', 'sm_90a' -> '9.0a', 'sm_100' -> '10.0'."""
    match = _ARCH.fullmatch(arch)
    if match is None:
        raise TargetError(f"CUDA arch {arch!r} is not of the form sm_XY, e.g. sm_90 (H100) or sm_80 (A100)")
    major, minor, suffix = match.groups()
    return f"{major}.{minor}{suffix}"


def resolve_cuda_backend(target_dict: dict, device: str | None, timing: str, device_key: str | None):
    """A Backend for a ``{"kind": "cuda", ...}`` target. Without ``arch``, the GPU of this machine
    gives it; a GPU of that arch here fills in its limits, model and driver version."""
    import tvm

    import search_spaces

    from .backend import Backend, _canonical
    from .cuda import detect_gpu, nvrtc_version

    target_dict = dict(target_dict)
    gpu = detect_gpu() if device_key is None else None
    if "arch" not in target_dict:
        if gpu is None:
            raise TargetError('target kind "cuda" needs an "arch" such as "sm_90" when this machine has no GPU')
        target_dict["arch"] = gpu.arch
    capability = compute_capability(str(target_dict["arch"]))
    here = gpu is not None and gpu.compute_capability == capability.rstrip("abcdefghijklmnopqrstuvwxyz")
    if here:
        target_dict.setdefault("max_threads_per_block", gpu.max_threads_per_block)
        target_dict.setdefault("max_shared_memory_per_block", gpu.max_shared_memory_per_block)
    target_dict.setdefault("max_shared_memory_per_block", DEFAULT_SHARED_MEMORY_BYTES)
    try:
        target = tvm.target.Target(target_dict)
    except Exception as err:  # TVM raises ValueError/TVMError with a multi-line text
        raise TargetError(f"target {json.dumps(target_dict)} is rejected by TVM: {error_line(err)}") from None
    if device is None:
        device = gpu.model if here else "unknown"
    description = {"model": device, "compute_capability": capability}
    versions = {"driver_version": gpu.driver_version if here else None,
                "runtime_version": gpu.runtime_version if here else None, "nvrtc_version": nvrtc_version()}
    description.update({name: value for name, value in versions.items() if value is not None})
    return Backend(target=_canonical(target), device=device, features=(), num_cores=1,
                   tvm_version=tvm.__version__, space_version=search_spaces.SPACE_VERSION, timing=timing,
                   device_key=device_key, gpu=description)
