"""Graph rewrites of normalizations written out op by op (registered in ``tuner.rewrites.REWRITES``).

* ``layer_norm``: ONNX has had ``LayerNormalization`` only since opset 17, so exporters wrote a
  layer normalization over the last axis as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul,
  Add (BERT's and GPT-2's exports). TVM fuses that into three tasks (the mean and the subtract, the
  power alone, the rest) with five passes over the activations; as one ``nn.layer_norm`` (two
  passes, the same arithmetic: the variance is the mean of the squared differences) it is one task,
  as in ONNX Runtime, which fuses the same pattern.
"""

from __future__ import annotations


def layer_norm():
    """The pass described in the module docstring."""
    from tvm import relax

    from .rewrites import use_counted_pass

    @relax.expr_functor.mutator
    class LayerNorm(relax.PyExprMutator):
        def __init__(self, module, uses):
            super().__init__(module)
            self.uses = uses

        def visit_var_binding_(self, binding):
            found = _layer_norm_parts(self, binding.value, self.uses)
            if found is None:
                return super().visit_var_binding_(binding)
            data, gamma, beta, epsilon = found
            dtype = str(binding.var.ty.dtype)
            norm = relax.op.nn.layer_norm(self.visit_expr(data), relax.const(gamma.astype(dtype)),
                                          relax.const(beta.astype(dtype)), axes=[-1], epsilon=epsilon)
            self.set_var_remap(binding.var, self.builder_.emit(norm, name_hint=binding.var.name))

    return use_counted_pass(LayerNorm, "LayerNorm")


def _layer_norm_parts(mutator, value, uses):
    """For ``value = (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * gamma + beta``, every mean over
    the last axis, ``gamma`` and ``beta`` constants over it, and no step used outside the pattern:
    (x, gamma, beta, eps), gamma and beta of the last axis' length; else None."""
    scaled, beta = _with_constant(mutator, value, "relax.add")
    normed, gamma = _with_constant(mutator, scaled, "relax.multiply", uses)
    divide = _call(mutator, normed, "relax.divide", uses)
    if beta is None or gamma is None or divide is None:
        return None
    centered, std = divide.args
    sqrt = _call(mutator, std, "relax.sqrt", uses)
    variance, epsilon = _with_constant(mutator, sqrt.args[0] if sqrt is not None else None, "relax.add", uses)
    variance = _last_axis_mean(mutator, variance, uses)
    square = _call(mutator, variance.args[0] if variance is not None else None, "relax.power", uses)
    subtract = _call(mutator, centered, "relax.subtract")
    if square is None or epsilon is None or epsilon.size != 1 or subtract is None or uses.get(centered) != 2:
        return None
    mean = _last_axis_mean(mutator, subtract.args[1], uses)
    if not square.args[0].same_as(centered) or _scalar(mutator, square.args[1]) != 2.0:
        return None
    if mean is None or not mean.args[0].same_as(subtract.args[0]):
        return None
    try:
        length = int(list(value.ty.shape)[-1])
    except (TypeError, ValueError):  # a symbolic last axis
        return None
    if any(v.shape[-1:] != (length,) or v.size != length for v in (gamma, beta)):
        return None  # a scale or bias over more than the last axis, or one value for all
    return subtract.args[0], gamma.reshape(-1), beta.reshape(-1), float(epsilon.reshape(-1)[0])


def _call(mutator, expr, op_name: str, uses=None):
    """The call of ``op_name`` that ``expr`` is bound to, where (with ``uses``) nothing else uses it."""
    from .rewrites import _bound_call

    if expr is None or (uses is not None and uses.get(expr, 0) != 1):
        return None
    return _bound_call(mutator, expr, op_name)


def _with_constant(mutator, expr, op_name: str, uses=None):
    """For ``expr`` bound to ``op_name(a, c)`` or ``op_name(c, a)`` with a constant ``c``: (a, c's value)."""
    from .rewrites import _constant

    call = _call(mutator, expr, op_name, uses)
    for operand, other in ((0, 1), (1, 0)) if call is not None else ():
        constant = _constant(mutator, call.args[other])
        if constant is not None and _constant(mutator, call.args[operand]) is None:
            return call.args[operand], constant
    return None, None


def _last_axis_mean(mutator, expr, uses):
    """The ``mean`` call ``expr`` is bound to, where it keeps the dims and reduces the last axis only."""
    call = _call(mutator, expr, "relax.mean", uses)
    if call is None or not bool(call.attrs.keepdims) or call.attrs.axis is None:
        return None
    rank = call.args[0].ty.ndim
    return call if [int(a) % rank for a in call.attrs.axis] == [rank - 1] else None


def _scalar(mutator, expr) -> float | None:
    """The value of a constant of one element, else None."""
    from .rewrites import _constant

    value = _constant(mutator, expr)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None
