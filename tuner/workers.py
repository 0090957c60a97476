"""Functions that run inside measurement worker processes.

They take and return plain values (JSON text, paths, ``messages`` dataclasses,
``MeasureResult``) so that a worker needs nothing from the parent but this module.
They never import ``tvm.s_tir.tensor_intrin`` (a 22 s import): a build worker only
applies a config and compiles.
"""

from __future__ import annotations

import os

import numpy as np

from .device_timing import check_and_time, prepacked, random_arrays
from .errors import error_line
from .messages import Artifact, Prepack, TimingOptions
from .records import ErrorKind, MeasureResult
from .toolchain import export_library


def error_message(err: BaseException) -> str:
    """A stored error message: the error's type and the last line of its text (TVM's errors end
    with the message, after a C++ trace)."""
    return f"{type(err).__name__}: {error_line(err, last=True)}"[:500]


def build_candidate(tir_json: str, config_json: str, target: dict, path: str,
                    cc: str | None = None) -> Artifact | MeasureResult:
    """Lower a config of a task's function (``lower.lower``) and compile it to ``path``.

    A schedule that packs weights is split (``tuner.prepack``): the library holds
    ``main`` (the compute, which is timed) and ``prepack``, and the artifact says which
    inputs ``prepack`` turns into which packed shapes. ``cc`` links it (``toolchain.export_library``).
    """
    import tvm

    import search_spaces

    from .lower import lower

    if target.get("kind") == "cuda":  # NVRTC's headers, and its callback where a GPU compiles at build time
        from .cuda import prepare

        prepare()
    tvm_target = tvm.target.Target(target)
    try:
        config = search_spaces.Config.from_json(config_json)
        split = lower(tvm.ir.load_json(tir_json), config, tvm_target).split()
    except search_spaces.InvalidConfigError as err:
        return MeasureResult.error(ErrorKind.INVALID_CONFIG, error_message(err))
    try:
        export_library(tvm.compile(split.module(), target=tvm_target), path, cc)
    except Exception as err:  # codegen can fail with many TVM error types
        return MeasureResult.error(ErrorKind.BUILD, error_message(err))
    return Artifact(config, path, Prepack.of(split))


def random_arguments(func, seed: int) -> list[np.ndarray]:
    """Random arrays for every parameter (``device_timing.random_arrays``)."""
    return random_arrays([([int(d) for d in param.ty.shape], str(param.ty.dtype)) for param in func.params], seed)


def write_reference(tir_json: str, target: dict, io_dir: str, num_outputs: int, seed: int = 0) -> None:
    """Run the unscheduled function once on random inputs; save inputs and expected outputs as .npy files."""
    import tvm

    func = tvm.ir.load_json(tir_json)
    arrays = random_arguments(func, seed)
    executable = tvm.compile(tvm.IRModule({"main": func}), target=tvm.target.Target(target))
    tensors = [tvm.runtime.tensor(array, tvm.cpu()) for array in arrays]
    executable["main"](*tensors)
    os.makedirs(io_dir, exist_ok=True)
    for index, array in enumerate(arrays):
        np.save(os.path.join(io_dir, f"arg{index}.npy"), array)
    for index in range(len(arrays) - num_outputs, len(arrays)):
        np.save(os.path.join(io_dir, f"expected{index}.npy"), tensors[index].numpy())


def load_arguments(io_dir: str, num_args: int, num_outputs: int) -> list[np.ndarray]:
    """A task's saved inputs, with zeroed arrays in the output slots."""
    arrays = [np.load(os.path.join(io_dir, f"arg{index}.npy")) for index in range(num_args)]
    for index in range(num_args - num_outputs, num_args):
        arrays[index] = np.zeros_like(arrays[index])
    return arrays


def load_expected(io_dir: str, num_args: int, num_outputs: int) -> dict[int, np.ndarray]:
    """The unscheduled function's outputs on the saved inputs, by argument index."""
    return {index: np.load(os.path.join(io_dir, f"expected{index}.npy"))
            for index in range(num_args - num_outputs, num_args)}


def time_loaded(module, device, arrays, expected: dict | None, options: TimingOptions,
                prepack: Prepack | None = None) -> MeasureResult:
    """Time a loaded candidate ``module`` on ``device`` (this machine's, or a remote session's) on
    ``arrays``, after checking its outputs against ``expected`` when given. TVM's errors propagate."""
    import tvm

    tensors = [tvm.runtime.tensor(array, device) for array in arrays]
    if prepack:
        tensors = prepacked(module, tensors, prepack.indices, prepack.packed, device)
    costs, mismatch = check_and_time(module, device, tensors, expected, options.to_json())
    if mismatch:
        return MeasureResult.error(ErrorKind.WRONG_RESULT, mismatch)
    return MeasureResult(tuple(costs))


def run_candidate(path: str, io_dir: str, num_args: int, num_outputs: int, check: bool, options: TimingOptions,
                  prepack: Prepack | None = None) -> MeasureResult:
    """Load a built candidate, optionally check its outputs, then time it: its costs, or an error."""
    import tvm

    from .runtime import set_num_threads

    set_num_threads(options.num_threads)
    try:
        device = _device(options.device)
        module = tvm.runtime.load_module(path)
        arrays = load_arguments(io_dir, num_args, num_outputs)
        expected = load_expected(io_dir, num_args, num_outputs) if check else None
        return time_loaded(module, device, arrays, expected, options, prepack)
    except (RuntimeError, ValueError) as err:  # how TVM reports runtime failures; other errors are bugs
        return MeasureResult.error(ErrorKind.RUN, error_message(err))


def _device(kind: str):
    """This machine's device of ``kind`` ("cpu" or "cuda": the first GPU, with TVM's CUDA runtime loaded)."""
    import tvm

    if kind == "cuda":
        from .cuda import prepare

        reason = prepare()
        if reason is not None:
            raise RuntimeError(f"TVM's CUDA runtime cannot be loaded: {reason}")
        return tvm.cuda(0)
    return tvm.cpu()
