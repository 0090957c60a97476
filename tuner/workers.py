"""Functions that run inside measurement worker processes.

They take and return plain values (JSON text, paths, dicts) so that a worker
needs nothing from the parent but this module. They never import
``tvm.s_tir.tensor_intrin`` (a 22 s import): a build worker only applies a
config and compiles.
"""

from __future__ import annotations

import os

import numpy as np

RESULT_OK = "ok"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return f"{type(err).__name__}: {text}"[:500]


def _load_func(tir_json: str):
    import tvm

    return tvm.ir.load_json(tir_json)


def build_candidate(tir_json: str, config_json: str, target: dict, path: str) -> dict:
    """Apply a config to a task's function and compile it to ``path``. Returns ``{"status", ...}``.

    A schedule that packs weights is split (``tuner.prepack``): the library holds
    ``main`` (the compute, which is timed) and ``prepack``, and the result says which
    inputs ``prepack`` turns into which packed shapes.
    """
    import tvm

    import search_spaces

    from .prepack import split_prepack

    func = _load_func(tir_json)
    tvm_target = tvm.target.Target(target)
    try:
        space = search_spaces.space_for(func, tvm_target)
        schedule = space.apply(search_spaces.Config.from_json(config_json))
    except (search_spaces.InvalidConfigError, ValueError, KeyError) as err:
        return {"status": "invalid_config", "message": _first_line(err)}
    try:
        split = split_prepack(schedule.mod["main"])
        executable = tvm.compile(split.module(), target=tvm_target)
        executable.export_library(path)
    except Exception as err:  # codegen can fail with many TVM error types
        return {"status": "build", "message": _first_line(err)}
    prepack = {"indices": list(split.indices), "packed": split.packed_shapes()} if split.prepack else None
    return {"status": RESULT_OK, "path": path, "prepack": prepack}


def random_arguments(func, seed: int) -> list[np.ndarray]:
    """Random arrays for every parameter: normal floats, zeros for integers (always valid indices)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for param in func.params:
        shape = [int(d) for d in param.ty.shape]
        dtype = np.dtype(str(param.ty.dtype))
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(shape).astype(dtype))
        else:
            arrays.append(np.zeros(shape, dtype))
    return arrays


def write_reference(tir_json: str, target: dict, io_dir: str, num_outputs: int, seed: int = 0) -> dict:
    """Run the unscheduled function once on random inputs; save inputs and expected outputs as .npy files."""
    import tvm

    func = _load_func(tir_json)
    arrays = random_arguments(func, seed)
    executable = tvm.compile(tvm.IRModule({"main": func}), target=tvm.target.Target(target))
    tensors = [tvm.runtime.tensor(array, tvm.cpu()) for array in arrays]
    executable["main"](*tensors)
    os.makedirs(io_dir, exist_ok=True)
    for index, array in enumerate(arrays):
        np.save(os.path.join(io_dir, f"arg{index}.npy"), array)
    for index in range(len(arrays) - num_outputs, len(arrays)):
        np.save(os.path.join(io_dir, f"expected{index}.npy"), tensors[index].numpy())
    return {"status": RESULT_OK, "num_args": len(arrays)}


def _load_arguments(io_dir: str, num_args: int) -> list[np.ndarray]:
    return [np.load(os.path.join(io_dir, f"arg{index}.npy")) for index in range(num_args)]


def _check_outputs(tensors, io_dir: str, num_outputs: int, rtol: float, atol: float) -> str | None:
    for index in range(len(tensors) - num_outputs, len(tensors)):
        expected = np.load(os.path.join(io_dir, f"expected{index}.npy"))
        got = tensors[index].numpy()
        scale = float(np.nanmax(np.abs(expected))) if expected.size else 0.0
        if not np.allclose(got, expected, rtol=rtol, atol=atol * max(scale, 1.0), equal_nan=True):
            worst = float(np.nanmax(np.abs(got.astype(np.float64) - expected)))
            return f"output {index} differs from the unscheduled function by up to {worst:.3g}"
    return None


def _prepacked(module, tensors: list, prepack: dict | None, device) -> list:
    """``tensors`` with the inputs that ``prepack`` names replaced by their packed forms (made once, untimed)."""
    import tvm

    if not prepack:
        return tensors
    originals = [tensors[index] for index in prepack["indices"]]
    packed = [tvm.runtime.tensor(np.zeros(shape, dtype), device) for shape, dtype in prepack["packed"]]
    module["prepack"](*originals, *packed)
    tensors = list(tensors)
    for index, tensor in zip(prepack["indices"], packed):
        tensors[index] = tensor
    return tensors


def _repeated_costs(module, device, tensors, settings: dict) -> list[float]:
    """Seconds per run of ``repeat`` repeats of at least ``min_repeat_ms`` each, on warm caches."""
    timer = module.time_evaluator("main", device, number=1, repeat=int(settings["repeat"]),
                                  min_repeat_ms=int(settings["min_repeat_ms"]))
    return [float(c) for c in timer(*tensors).results]


def _flushed_costs(module, device, tensors, settings: dict) -> list[float]:
    """Seconds of single runs, each after flushing the caches of every argument but the first: as many
    as fill ``repeat`` x ``min_repeat_ms`` (one untimed-for-the-record run estimates a run's time),
    at least ``repeat`` and at most ``max_runs``."""
    import math

    def timer(runs):
        return module.time_evaluator("main", device, number=1, repeat=runs, min_repeat_ms=0,
                                     f_preproc="cache_flush_cpu_non_first_arg")

    estimate = float(timer(1)(*tensors).results[0])
    budget_s = int(settings["repeat"]) * int(settings["min_repeat_ms"]) / 1e3
    runs = min(int(settings["max_runs"]), max(int(settings["repeat"]), math.ceil(budget_s / max(estimate, 1e-9))))
    return [float(c) for c in timer(runs)(*tensors).results]


def run_candidate(path: str, io_dir: str, num_args: int, num_outputs: int, check: bool, settings: dict,
                  prepack: dict | None = None) -> dict:
    """Load a built candidate, optionally check its outputs, then time it. Returns costs or an error."""
    import tvm

    from .runtime import set_num_threads

    set_num_threads(int(settings["num_threads"]))
    device = tvm.cpu()
    try:
        module = tvm.runtime.load_module(path)
        arrays = _load_arguments(io_dir, num_args)
        for index in range(num_args - num_outputs, num_args):
            arrays[index] = np.zeros_like(arrays[index])
        tensors = _prepacked(module, [tvm.runtime.tensor(array, device) for array in arrays], prepack, device)
        if check:
            module["main"](*tensors)
            mismatch = _check_outputs(tensors, io_dir, num_outputs, settings["rtol"], settings["atol"])
            if mismatch:
                return {"status": "wrong_result", "message": mismatch}
        timed = _flushed_costs if settings["cache_flush"] else _repeated_costs
        costs = timed(module, device, tensors, settings)
    except (RuntimeError, ValueError) as err:  # how TVM reports runtime failures; other errors are bugs
        return {"status": "run", "message": _first_line(err)}
    return {"status": RESULT_OK, "costs_s": costs}
