"""Graph rewrite ``fold_channel_affine`` (registered in ``tuner.rewrites.REWRITES``).

Some exporters write a scale layer after a convolution (and its BatchNorm) as ONNX ``Mul`` and
``Add`` of per-channel constants: Inception v2 runs ``Conv, BatchNormalization, Mul, Add, Relu``.
Each such multiply or add right after a convolution with constant weights is folded into its
weights and bias, as ONNX Runtime's ConvMulFusion and ConvAddFusion do, so that the convolution's
epilogue is a bias and the activation, as after a folded BatchNorm (``rewrites.fold_batchnorm``),
and its task is the one a model without the scale layer has.
"""

from __future__ import annotations

import numpy as np

_OPS = ("relax.multiply", "relax.add")


def fold_channel_affine():
    """The pass described in the module docstring."""
    from tvm import relax

    from .rewrites import conv_with_weight, use_counted_pass

    @relax.expr_functor.mutator
    class FoldChannelAffine(relax.PyExprMutator):
        def __init__(self, module, uses):
            super().__init__(module)
            self.uses = uses

        def visit_var_binding_(self, binding):
            folded = _foldable(self, binding, self.uses)
            if folded is None:
                return super().visit_var_binding_(binding)
            conv_var, conv, weight, bias = folded
            call = conv_with_weight(conv, conv.args[0], weight)
            last = _emitter(self.builder_, binding.var)
            if bias is None:
                new_conv = out = last(call, name_hint=conv_var.name)
            else:
                new_conv = self.builder_.emit(call, name_hint=conv_var.name)
                out = last(relax.op.add(new_conv, relax.const(bias)), name_hint=binding.var.name)
            # a later multiply or add of the chain folds into what this one emitted
            self.uses[new_conv] = 1
            self.uses[out] = self.uses.get(binding.var, 0)
            self.set_var_remap(binding.var, out)

    return use_counted_pass(FoldChannelAffine, "FoldChannelAffine")


def _emitter(builder, var):
    """How to emit the value that replaces ``var``'s: as an output of the dataflow block where ``var``
    is one (TVM's importer binds the function's output to its last op), else as a dataflow value."""
    from tvm import relax

    output = builder.current_block_is_dataflow() and not isinstance(var, relax.DataflowVar)
    return builder.emit_output if output else builder.emit


def _foldable(mutator, binding, uses):
    """For ``y = x * s`` or ``y = x + t`` with a constant per-output-channel ``s``/``t`` and ``x`` a
    convolution (NCHW/OIHW, constant weights) or its bias add, each used by ``y`` alone: (conv's
    variable, conv call, new weights, new bias [1, C, 1, 1] or None); else None."""
    from tvm import relax

    from .rewrites import _bound_call, _constant, _conv_and_bias

    value = binding.value
    op = getattr(value.op, "name", None) if isinstance(value, relax.Call) else None
    if op not in _OPS:
        return None
    data = mutator.visit_expr(value.args[0])
    if not isinstance(data, relax.Var) or uses.get(data, 0) != 1:
        return None
    conv_var, bias = _conv_and_bias(mutator, data, uses)
    conv = _bound_call(mutator, conv_var, "relax.nn.conv2d")
    if conv is None or uses.get(conv_var, 0) != 1 or (conv.attrs.data_layout, conv.attrs.kernel_layout,
                                                      conv.attrs.out_layout) != ("NCHW", "OIHW", "NCHW"):
        return None
    weight = _constant(mutator, conv.args[1])
    if weight is None or not _same_type(value, conv):
        return None
    operand = _per_channel(_constant(mutator, mutator.visit_expr(value.args[1])), int(weight.shape[0]))
    if operand is None or operand.dtype != weight.dtype:
        return None
    if op == "relax.add" and bias is None:
        return None  # a convolution's own bias: nothing to fold into
    bias = None if bias is None else bias.reshape(-1).astype(np.float64)
    if op == "relax.multiply":
        weight = (weight.astype(np.float64) * operand.reshape(-1, 1, 1, 1)).astype(weight.dtype)
        bias = None if bias is None else bias * operand
    else:
        bias = operand.astype(np.float64) + bias
    return conv_var, conv, weight, None if bias is None else bias.astype(weight.dtype).reshape(1, -1, 1, 1)


def _per_channel(value, channels: int):
    """``value`` as one number per output channel, where it broadcasts against ``[N, C, H, W]`` along
    the channels alone (shape ``[1, C, 1, 1]``, ``[C, 1, 1]``, or one number); else None."""
    if value is None or value.ndim > 4:
        return None
    shape = (1,) * (4 - value.ndim) + value.shape
    if shape[0] != 1 or shape[2:] != (1, 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(shape), (1, channels, 1, 1)).reshape(-1)


def _same_type(value, conv) -> bool:
    """Whether the multiply or add keeps the convolution's shape and dtype (it broadcasts nothing
    onto the convolution's output)."""
    from tvm_ffi import structural_equal

    return structural_equal(value.ty, conv.ty)
