"""Graph rewrites on the imported Relax module, before it is fused into tasks.

Each rewrite is a small named pass (``REWRITES``); ``rewrite(module)`` applies them all.

* ``multi_input_to_binary``: TVM's ONNX importer writes ``Sum``/``Mean``/``Max``/``Min`` of
  inputs of a known shape as ``broadcast_to`` each input, ``stack`` them and reduce over the new
  axis, which materialises the stacked tensor and is a task of its own (``fused_broadcast_to_
  stack_sum``). A chain of binary ops (``add``, ``maximum``, ``minimum``; ``Mean`` then scaled by
  1/n) broadcasts the same way, and fuses into the epilogue of the kernel that produces its first
  input: ResNet's residual add and the ReLU after it run in the convolution's epilogue.
"""

from __future__ import annotations


def _binary_ops() -> dict:
    from tvm import relax

    return {"relax.sum": relax.op.add, "relax.mean": relax.op.add, "relax.max": relax.op.maximum,
            "relax.min": relax.op.minimum}


def multi_input_to_binary():
    """The pass described in the module docstring."""
    import tvm
    from tvm import relax

    binary = _binary_ops()

    @relax.expr_functor.mutator
    class StackReduceToBinary(relax.PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            name = getattr(call.op, "name", None)
            if name not in binary or not _reduces_new_axis(call):
                return call
            stacked = _bound_call(self, call.args[0], "relax.stack")
            if stacked is None or int(stacked.attrs.axis) != 0 or not isinstance(stacked.args[0], relax.Tuple):
                return call
            inputs = [_unbroadcast(self, field) for field in stacked.args[0].fields]
            result = inputs[0]
            for operand in inputs[1:]:
                result = self.builder_.normalize(binary[name](result, operand))
            if name == "relax.mean":
                dtype = call.ty.dtype
                result = relax.op.multiply(result, relax.const(1.0 / len(inputs), dtype))
            if len(inputs) == 1 and not tvm.ir.structural_equal(result.ty, call.ty):
                return call  # a one-input op whose input needs its broadcast
            return result

    @tvm.ir.transform.module_pass(opt_level=0, name="MultiInputToBinary")
    def transform(module, _context):
        module = module.clone()  # the caller's module (a Model caches its own) stays as it was
        for global_var, func in module.functions_items():
            if isinstance(func, relax.Function):
                module[global_var] = StackReduceToBinary().visit_expr(func)
        return relax.transform.DeadCodeElimination()(module)

    return transform


def _reduces_new_axis(call) -> bool:
    axis = call.attrs.axis
    return axis is not None and [int(a) for a in axis] == [0] and not bool(call.attrs.keepdims)


def _bound_call(mutator, expr, op_name: str):
    """The call of ``op_name`` that ``expr`` (a variable) is bound to, or None."""
    from tvm import relax

    if isinstance(expr, relax.Var):
        expr = mutator.lookup_binding(expr)
    if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == op_name:
        return expr
    return None


def _unbroadcast(mutator, expr):
    """``x`` for a variable bound to ``broadcast_to(x, shape)``: the binary op broadcasts it the same way."""
    broadcast = _bound_call(mutator, expr, "relax.broadcast_to")
    return broadcast.args[0] if broadcast is not None else expr


REWRITES = {"multi_input_to_binary": multi_input_to_binary}


def rewrite(module):
    """``module`` with every rewrite of ``REWRITES`` applied, in order."""
    for make_pass in REWRITES.values():
        module = make_pass()(module)
    return module
