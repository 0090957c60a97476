"""Graph rewrites on the imported Relax module, before it is fused into tasks.

Each rewrite is a small named pass (``REWRITES``); ``rewrite(module)`` applies them all.

* ``fold_batchnorm``: BatchNorm after a convolution (with or without its bias add) folded into its
  weights and bias; any other inference BatchNorm becomes a per-channel multiply-add of constants.
* ``fold_channel_affine`` (``tuner.channel_affine``): a per-channel multiply or add of constants
  after a convolution (a scale layer, Inception v2's) folded into its weights and bias.
* ``multi_input_to_binary``: TVM's ONNX importer writes ``Sum``/``Mean``/``Max``/``Min`` of
  inputs of a known shape as ``broadcast_to`` each input, ``stack`` them and reduce over the new
  axis, which materialises the stacked tensor and is a task of its own (``fused_broadcast_to_
  stack_sum``). A chain of binary ops (``add``, ``maximum``, ``minimum``; ``Mean`` then scaled by
  1/n) broadcasts the same way, and fuses into the epilogue of the kernel that produces its first
  input: ResNet's residual add and the ReLU after it run in the convolution's epilogue.
* ``grouped_conv_group_axis``: a grouped convolution that is not depthwise (ShuffleNet's,
  ResNeXt's) computes ``out[n, g, f, y, x]`` with the group an axis of its own, then reshapes to
  NCHW (free). Written with one output-channel axis, the input's channel index depends on the
  output channel (``ff // per_group``), so no schedule can reuse an input load across a block of
  output channels; with the group apart, ``f`` is an ordinary output-channel axis, padded with zero
  filters to a multiple of 8 where a group's count is not one (ShuffleNet's 34 and 68).
* ``avg_pool_divisor_map`` (``tuner.pool_rewrites``): an average pool that leaves the padding out
  of its count divides by a constant map instead of counting per element.
* ``layer_norm`` (``tuner.norm_rewrites``): a layer normalization written out op by op (ReduceMean,
  Sub, Pow, ..., as exporters wrote it before opset 17) becomes one ``nn.layer_norm``.
"""

from __future__ import annotations

import numpy as np

# the rewrites kept in modules of their own import this one's helpers inside their functions
from .channel_affine import fold_channel_affine
from .norm_rewrites import layer_norm
from .pool_rewrites import avg_pool_divisor_map


def _binary_ops() -> dict:
    from tvm import relax

    return {"relax.sum": relax.op.add, "relax.mean": relax.op.add, "relax.max": relax.op.maximum,
            "relax.min": relax.op.minimum}


def multi_input_to_binary():
    """The pass described in the module docstring."""
    import tvm
    from tvm import relax
    from tvm_ffi import structural_equal

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
            if len(inputs) == 1 and not structural_equal(result.ty, call.ty):
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


def grouped_conv_group_axis():
    """The pass described in the module docstring."""
    from tvm import relax

    @relax.expr_functor.mutator
    class GroupAxis(relax.PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if getattr(call.op, "name", None) != "relax.nn.conv2d" or not _splittable(call):
                return call
            attrs = call.attrs
            dtype = attrs.out_dtype or call.ty.dtype
            weight, per_out = _padded_group_weight(self, call.args[1], int(attrs.groups))
            grouped = self.builder_.call_te(
                _group_axis_conv, call.args[0], weight, [int(v) for v in attrs.strides],
                [int(v) for v in attrs.padding], [int(v) for v in attrs.dilation], int(attrs.groups), str(dtype),
                per_out, primfunc_name_hint="group_conv2d")
            return grouped

    return builder_pass(GroupAxis, "GroupedConvGroupAxis")


def builder_pass(mutator_class, name: str):
    """A module pass that applies ``mutator_class`` (a ``PyExprMutator`` that emits new TIR functions
    through its builder) to every Relax function of the module."""
    import tvm
    from tvm import relax

    @tvm.ir.transform.module_pass(opt_level=0, name=name)
    def transform(module, _context):
        mutator = mutator_class(module)  # its builder starts from a copy of ``module`` and gets the new TIR
        for global_var, func in module.functions_items():
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(global_var, mutator.visit_expr(func))
        return mutator.builder_.get()

    return transform


def _padded_group_weight(mutator, weight, groups: int):
    """The grouped conv's weight as ``W[g, f, c, ky, kx]``, so that ``f`` alone indexes a dimension
    of it (a schedule vectorized along ``f`` can pack it), and the true count of ``f``. A constant
    weight's groups get zero filters up to a multiple of ``GROUP_CHANNEL_MULTIPLE`` output channels
    (a vector register's width with AVX2): ShuffleNet's groups have 34 or 68, which no whole register
    fits, so the default vectorized 7 lanes of a 14-wide row instead; 72 take 8-lane registers for 6 %
    more arithmetic. Not padded where it fits already or where padding would add over a quarter."""
    from tvm import relax

    value = _constant(mutator, weight)
    if value is None:
        out_channels, *rest = (int(d) for d in weight.ty.shape)
        return relax.op.reshape(weight, [groups, out_channels // groups, *rest]), out_channels // groups
    per_out = value.shape[0] // groups
    padded = -(-per_out // GROUP_CHANNEL_MULTIPLE) * GROUP_CHANNEL_MULTIPLE
    padded = per_out if padded > per_out * MAX_GROUP_PADDING else padded
    filled = np.zeros((groups, padded, *value.shape[1:]), value.dtype)
    filled[:, :per_out] = value.reshape(groups, per_out, *value.shape[1:])
    return relax.const(filled), per_out


def _group_axis_conv(data, weight, strides, padding, dilation, groups, out_dtype, per_out):
    """out[n, g, f, y, x] = sum over a group's input channels and the window: conv2d with the
    group an axis of its own, then reshaped to NCHW in the same function. ``weight`` is
    ``W[g, f, c, ky, kx]``; ``per_out``: the true output channels per group, where it has zero filters
    after them (``_padded_group_weight``)."""
    from tvm import te, topi

    n, channels, height, width = (int(d) for d in data.shape)
    _, padded_out, per_group, kernel_h, kernel_w = (int(d) for d in weight.shape)
    top, left, bottom, right = padding
    padded = topi.nn.pad(data, [0, 0, top, left], [0, 0, bottom, right]) if any(padding) else data
    out_h = (height + top + bottom - (kernel_h - 1) * dilation[0] - 1) // strides[0] + 1
    out_w = (width + left + right - (kernel_w - 1) * dilation[1] - 1) // strides[1] + 1
    rc = te.reduce_axis((0, per_group), "rc")
    ry = te.reduce_axis((0, kernel_h), "ry")
    rx = te.reduce_axis((0, kernel_w), "rx")
    grouped = te.compute(
        (n, groups, padded_out, out_h, out_w),
        lambda b, g, f, y, x: te.sum(
            padded[b, g * per_group + rc, y * strides[0] + ry * dilation[0], x * strides[1] + rx * dilation[1]]
            .astype(out_dtype) * weight[g, f, rc, ry, rx].astype(out_dtype), axis=[rc, ry, rx]),
        name="group_conv2d")
    if per_out == padded_out:
        return topi.reshape(grouped, (n, groups * per_out, out_h, out_w))
    return te.compute((n, groups * per_out, out_h, out_w),
                      lambda b, c, y, x: grouped[b, c // per_out, c % per_out, y, x], name="T_reshape")


GROUP_CHANNEL_MULTIPLE = 8
MAX_GROUP_PADDING = 1.25  # padded over true output channels per group, at most


def _splittable(call) -> bool:
    """A 2-D convolution in NCHW/OIHW with 1 < groups < input channels (not depthwise), static shapes."""
    attrs = call.attrs
    groups = int(attrs.groups)
    if groups == 1 or attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
        return False
    shape = call.args[0].ty.shape
    try:
        channels = int(shape[1])
    except (TypeError, ValueError):
        return False
    return groups < channels


def fold_batchnorm():
    """An inference BatchNorm right after a convolution with constant weights scales those weights
    and adds a bias, so that it costs nothing, as in ONNX Runtime. Written here rather than with
    TVM's FoldBatchnormToConv2D because that one renames the convolution's binding, and binding
    names carry the ONNX node each computation comes from (``tuner.provenance``)."""
    from tvm import relax

    @relax.expr_functor.mutator
    class FoldBatchNorm(relax.PyExprMutator):
        def __init__(self, module, uses):
            super().__init__(module)
            self.uses = uses

        def visit_var_binding_(self, binding):
            folded = _foldable_batchnorm(self, binding, self.uses)
            if folded is None:
                scaled = _scale_shift(self, binding)
                if scaled is None:
                    return super().visit_var_binding_(binding)
                data, scale, shift = scaled
                out = relax.op.add(relax.op.multiply(self.visit_expr(data), relax.const(scale)), relax.const(shift))
                self.set_var_remap(binding.var, self.builder_.emit(out, name_hint=binding.var.name))
                return None
            conv_var, conv, weight, bias = folded
            new_conv = conv_with_weight(conv, self.visit_expr(conv.args[0]), weight)
            conv_out = self.builder_.emit(new_conv, name_hint=conv_var.name)
            # named after the BatchNorm's own binding (``binding`` takes its first output)
            norm_var = binding.value.tuple_value
            name = norm_var.name if isinstance(norm_var, relax.Var) else binding.var.name
            added = self.builder_.emit(relax.op.add(conv_out, relax.const(bias)), name_hint=name)
            self.set_var_remap(binding.var, added)

    return use_counted_pass(FoldBatchNorm, "FoldBatchNorm")


def use_counted_pass(mutator_class, name: str):
    """A module pass that applies ``mutator_class(module, uses)`` (``uses``: how often each variable of
    the function is used) to every Relax function of the module, then drops the bindings it left dead."""
    import tvm
    from tvm import relax

    @tvm.ir.transform.module_pass(opt_level=0, name=name)
    def transform(module, _context):
        module = module.clone()
        for global_var, func in module.functions_items():
            if isinstance(func, relax.Function):
                module[global_var] = mutator_class(module, _use_counts(func)).visit_expr(func)
        return relax.transform.DeadCodeElimination()(module)

    return transform


def conv_with_weight(conv, data, weight):
    """``conv`` (a Relax ``nn.conv2d`` call) of ``data`` with the constant ``weight``, its attributes kept."""
    from tvm import relax

    attrs = conv.attrs
    return relax.op.nn.conv2d(data, relax.const(weight), strides=attrs.strides, padding=attrs.padding,
                              dilation=attrs.dilation, groups=attrs.groups, data_layout=attrs.data_layout,
                              kernel_layout=attrs.kernel_layout, out_layout=attrs.out_layout,
                              out_dtype=attrs.out_dtype)


def _use_counts(func) -> dict:
    """How often each variable is used in ``func``."""
    from tvm import relax

    counts: dict = {}

    def visit(expr):
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1

    relax.analysis.post_order_visit(func.body, visit)
    return counts


def _constant(mutator, expr):
    """The numpy value of a constant (or of a variable bound to one), else None."""
    from tvm import relax
    from tvm.ir.expr import Constant

    if isinstance(expr, relax.Var):
        expr = mutator.lookup_binding(expr)
    reshape = expr if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == "relax.reshape" else None
    if reshape is not None:  # the importer's reshape of a Conv bias to [1, C, 1, 1]
        value = _constant(mutator, reshape.args[0])
        shape = reshape.ty.shape
        return value.reshape([int(d) for d in shape]) if value is not None and shape is not None else None
    return expr.value.numpy() if isinstance(expr, Constant) else None


def _foldable_batchnorm(mutator, binding, uses):
    """For ``y = batch_norm(conv2d(x, W) [+ b], ...)[0]`` with constant weights and statistics, a conv whose
    result nothing else uses and the NCHW/OIHW layouts: (conv's variable, conv call, scaled W, bias
    of shape [1, C, 1, 1]); else None."""
    from tvm import relax

    value = binding.value
    if not isinstance(value, relax.TupleGetItem) or value.index != 0:
        return None
    norm = _bound_call(mutator, value.tuple_value, "relax.nn.batch_norm")
    if norm is None or int(norm.attrs.axis) != 1 or bool(norm.attrs.training):
        return None
    conv_var, conv_bias = _conv_and_bias(mutator, norm.args[0], uses)
    conv = _bound_call(mutator, conv_var, "relax.nn.conv2d")
    if conv is None or uses.get(conv_var, 0) != 1 or (conv.attrs.data_layout, conv.attrs.kernel_layout,
                                                      conv.attrs.out_layout) != ("NCHW", "OIHW", "NCHW"):
        return None
    weight = _constant(mutator, conv.args[1])
    folded = _scale_and_shift(mutator, norm)
    if weight is None or folded is None:
        return None
    dtype = weight.dtype
    scale, shift = folded
    scaled = (weight.astype(np.float64) * scale.reshape(-1, 1, 1, 1)).astype(dtype)
    if conv_bias is not None:
        if conv_bias.size != scale.size:
            return None
        shift = shift + conv_bias.astype(np.float64).reshape(-1) * scale
    return conv_var, conv, scaled, shift.astype(dtype).reshape(1, -1, 1, 1)


def _scale_shift(mutator, binding):
    """For ``y = batch_norm(x, ...)[0]`` of a 4-D ``x`` with constant statistics and no convolution to
    fold into (DenseNet's, after a concat): (x, scale, shift), each of shape [1, C, 1, 1], so that it is
    an element-wise multiply-add (which a blocked layout carries through, ``tuner.layout``); else None."""
    from tvm import relax

    value = binding.value
    if not isinstance(value, relax.TupleGetItem) or value.index != 0:
        return None
    norm = _bound_call(mutator, value.tuple_value, "relax.nn.batch_norm")
    if norm is None or int(norm.attrs.axis) != 1 or bool(norm.attrs.training) or norm.args[0].ty.ndim != 4:
        return None
    folded = _scale_and_shift(mutator, norm)
    if folded is None:
        return None
    dtype = str(norm.args[0].ty.dtype)
    scale, shift = (value.astype(dtype).reshape(1, -1, 1, 1) for value in folded)
    return norm.args[0], scale, shift


def _scale_and_shift(mutator, norm):
    """An inference BatchNorm's per-channel (scale, shift) in float64, from its constant parameters;
    None where one is not a constant."""
    gamma, beta, mean, var = (_constant(mutator, arg) for arg in norm.args[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        return None
    gamma = gamma if bool(norm.attrs.scale) else np.ones_like(gamma)
    beta = beta if bool(norm.attrs.center) else np.zeros_like(beta)
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(norm.attrs.epsilon))
    return scale, beta.astype(np.float64) - mean.astype(np.float64) * scale


def _conv_and_bias(mutator, expr, uses):
    """For ``expr`` bound to ``add(c, b)`` with a constant per-channel ``b`` (an ONNX Conv with a bias,
    which the importer writes as a conv2d and an add) and used only by the BatchNorm: (c, b's value).
    Else (expr, None)."""
    add = _bound_call(mutator, expr, "relax.add")
    if add is None or uses.get(expr, 0) != 1:
        return expr, None
    bias = _constant(mutator, add.args[1])
    shape = bias.shape if bias is not None else ()
    if bias is None or len(shape) != 4 or shape[0] != 1 or shape[2:] != (1, 1):
        return expr, None
    return add.args[0], bias


# In order: the BatchNorm is folded while the convolution before it is still one call.
REWRITES = {"multi_input_to_binary": multi_input_to_binary, "fold_batchnorm": fold_batchnorm,
            "fold_channel_affine": fold_channel_affine, "grouped_conv_group_axis": grouped_conv_group_axis,
            "avg_pool_divisor_map": avg_pool_divisor_map, "layer_norm": layer_norm}


def rewrite(module):
    """``module`` with every rewrite of ``REWRITES`` applied, in order."""
    for make_pass in REWRITES.values():
        module = make_pass()(module)
    return module
