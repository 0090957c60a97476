"""Weight prepacking: a scheduled function's layout copies of weights, split off.

A schedule may copy a weight into a blocked layout (``search_spaces.layout``);
when the weight is a constant (the function's ``layout_free_buffers``), the copy is
marked as a layout-rewrite preprocessing block. TVM's ``SplitLayoutRewritePreproc``
turns such a function into a ``prepack`` function (original weights in, packed
weights out) and a ``compute`` function that takes the packed weights. A model
build then runs ``prepack`` once, at build time (``FoldConstant``), and the
measurement times ``compute`` alone, on inputs that ``prepack`` made once before.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Split:
    """``compute`` (``global_symbol`` "main") and, when the schedule packs weights,
    ``prepack`` (``global_symbol`` "prepack"): its parameters are the original
    inputs at ``indices`` of ``compute``'s parameters, then their packed forms."""

    compute: object
    prepack: object = None
    indices: tuple[int, ...] = ()

    def module(self):
        """An IRModule with ``main`` (and ``prepack``) to compile as one library."""
        import tvm

        functions = {"main": self.compute}
        if self.prepack is not None:
            functions["prepack"] = self.prepack
        return tvm.IRModule(functions)

    def packed_shapes(self) -> list[tuple[list[int], str]]:
        """(shape, dtype) of each packed input, in the order of ``indices``."""
        params = list(self.prepack.params)[len(self.indices):] if self.prepack is not None else []
        return [([int(d) for d in p.ty.shape], str(p.ty.dtype)) for p in params]


def _has_prepack_block(func) -> bool:
    import tvm_ffi
    from tvm.s_tir.stmt import SBlock

    from search_spaces.layout import PREPACK_ANNOTATION

    found = []
    tvm_ffi.structural_walk(func.body, (SBlock, lambda block: found.append(PREPACK_ANNOTATION in block.annotations)),
                            order="post")
    return any(found)


def _written_params(func) -> list[int]:
    """Indices of the parameters some block writes (a TIR function's outputs)."""
    import tvm_ffi
    from tvm.s_tir.stmt import SBlock

    written = set()

    def visit(block):
        written.update(region.source.name for region in block.writes)

    tvm_ffi.structural_walk(func.body, (SBlock, visit), order="post")
    return [index for index, param in enumerate(func.params) if param.name in written]


def split_prepack(func) -> Split:
    """Split ``func`` (a scheduled task function) into its weight prepacking and its compute."""
    from tvm import relax

    outputs = _written_params(func)
    params = list(func.params)
    num_inputs = len(params) - len(outputs)
    if not _has_prepack_block(func) or outputs != list(range(num_inputs, len(params))):
        return Split(func.with_attr("global_symbol", "main"))
    builder = relax.BlockBuilder()
    inputs = [relax.Var(p.name, _tensor_type(p)) for p in params[:num_inputs]]
    with builder.function("main", inputs):
        task = builder.add_func(func.without_attr("global_symbol"), "task")
        out_types = [_tensor_type(p) for p in params[num_inputs:]]
        with builder.dataflow():
            call = builder.emit(relax.call_tir(task, inputs, out_types if len(out_types) > 1 else out_types[0]))
            result = builder.emit_output(call)
        builder.emit_func_output(result)
    split = relax.transform.SplitLayoutRewritePreproc()(builder.get())
    prepack, compute = split["task_weight_prepack"], split["task_prepacked"]
    indices = _prepack_arguments(split["main"], inputs)
    return Split(compute.with_attr("global_symbol", "main"), prepack.with_attr("global_symbol", "prepack"),
                 tuple(indices))


def _tensor_type(param):
    from tvm import relax

    return relax.TensorType([int(d) for d in param.ty.shape], str(param.ty.dtype))


def _prepack_arguments(main, inputs) -> list[int]:
    """Which of ``inputs`` the split ``main`` passes to the prepack function, in order."""
    from tvm import relax

    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == "relax.call_tir" \
                and expr.args[0].name_hint == "task_weight_prepack":
            found.extend(next(i for i, var in enumerate(inputs) if var.same_as(arg)) for arg in expr.args[1].fields)

    relax.analysis.post_order_visit(main, visit)
    return found


def prepack_weights(module, target):
    """Split the weight prepacking off every scheduled function of a model's Relax
    ``module`` and run it now, on the constant weights (TVM's ``FoldConstant``); the
    prepacking functions, no longer called, are dropped."""
    from tvm import relax

    module = relax.transform.SplitLayoutRewritePreproc()(module)
    with target:
        module = relax.transform.FoldConstant()(module)
    return relax.transform.DeadCodeElimination()(module)
