"""Run a compiled model: from a fresh build or from an exported ``.so`` and its JSON sidecar."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import BuildError, ShapeError
from .model import InputSpec


class CompiledModel:
    """A model compiled by TVM, run on numpy arrays through the Relax VM."""

    def __init__(self, executable, inputs: tuple[InputSpec, ...], output_names: tuple[str, ...], num_threads: int,
                 cuda: bool = False):
        import tvm
        from tvm import relax

        if cuda:  # the kernels are compiled when the library is loaded, which needs the GPU and its runtime
            from .cuda import require_gpu

            require_gpu("running a model built")
        set_num_threads(num_threads)
        self.inputs = inputs
        self.output_names = output_names
        self.device = tvm.cuda(0) if cuda else tvm.cpu()
        self._vm = relax.VirtualMachine(executable, self.device)

    def tensors(self, arrays) -> list:
        """The model's inputs as TVM tensors on its device, checked against the input specs."""
        return self._tensors(list(arrays), {})

    def _tensors(self, args, named):
        import tvm

        if args and named:
            raise ShapeError("give the inputs either by position or by name, not both")
        if named:
            unknown = sorted(set(named) - {spec.name for spec in self.inputs})
            if unknown:
                raise ShapeError(f"unknown input(s) {', '.join(unknown)}; the model's inputs are: "
                                 f"{', '.join(spec.name for spec in self.inputs)}")
            args = [named.get(spec.name) for spec in self.inputs]
        if len(args) != len(self.inputs) or any(a is None for a in args):
            raise ShapeError(f"the model takes {len(self.inputs)} input(s): "
                             f"{', '.join(spec.name for spec in self.inputs)}")
        tensors = []
        for spec, array in zip(self.inputs, args):
            array = np.ascontiguousarray(array, dtype=spec.dtype)
            if array.shape != spec.shape:
                raise ShapeError(f"input {spec.name!r} has shape {list(array.shape)}; the model was built for "
                                 f"{list(spec.shape)}")
            tensors.append(tvm.runtime.tensor(array, self.device))
        return tensors

    def run(self, *args, **named) -> list[np.ndarray]:
        """Run once on numpy inputs (by position or by name); returns the outputs as numpy arrays."""
        return _to_numpy(self._vm["main"](*self._tensors(args, named)))

    def time_s(self, *args, number: int = 10, repeat: int = 5, **named) -> list[float]:
        """Seconds per run for each of ``repeat`` repeats (each the mean of ``number`` runs), after one warm-up."""
        self._vm.set_input("main", *self._tensors(args, named))
        timer = self._vm.time_evaluator("invoke_stateful", self.device, number=number, repeat=repeat)
        return [float(r) for r in timer("main").results]


def _to_numpy(value) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    outputs = []
    for item in value:
        outputs.extend(_to_numpy(item))
    return outputs


def set_num_threads(num_threads: int) -> None:
    """Size TVM's thread pool for this process.

    TVM reads ``TVM_NUM_THREADS`` once, when its pool first starts (without it, it may
    pick a single thread), and ``runtime.config_threadpool`` does not resize it here. So
    this must run before the first kernel of the process; a pool already started with
    another size is reported with a warning.
    """
    import tvm_ffi

    os.environ["TVM_NUM_THREADS"] = str(num_threads)
    actual = tvm_ffi.get_global_func("runtime.NumThreads")()
    if actual != num_threads:
        warnings.warn(f"TVM's thread pool already runs {actual} thread(s); {num_threads} were asked for",
                      RuntimeWarning, stacklevel=2)


def load_module(path) -> CompiledModel:
    """Load a model exported by ``tuner build`` (``OUT.so`` with ``OUT.so.json`` beside it)."""
    import tvm

    from .build import sidecar_path

    path = Path(path)
    meta_path = sidecar_path(path)
    if not path.is_file():
        raise BuildError(f"compiled model {path} does not exist")
    if not meta_path.is_file():
        raise BuildError(f"{meta_path} is missing: it holds the inputs of {path} and is written by 'tuner build'")
    try:
        meta = json.loads(meta_path.read_text())
        inputs = tuple(InputSpec.from_json(item) for item in meta["inputs"])
        outputs = tuple(meta["outputs"])
        num_threads = int(meta["backend"]["num_cores"])
        cuda = meta["backend"]["target"].get("kind") == "cuda"
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise BuildError(f"{meta_path} is not a valid build description: {err}") from None
    if cuda:
        from .cuda import require_gpu

        require_gpu("loading a model built")
    library = tvm.runtime.load_module(str(path))
    return CompiledModel(library, inputs, outputs, num_threads, cuda)
