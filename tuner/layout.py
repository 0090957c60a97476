"""Whole-graph blocked activation layout for convolutions (NCHW[b]c).

In NCHW each convolution reads and writes a layout it does not compute in: its kernel keeps a block
of output channels in one vector register, so it writes them ``H*W`` elements apart. ONNX Runtime
keeps activations in a blocked NCHWc layout from one convolution to the next instead, and so does
this pass: every plain 2-D convolution whose input and output channels divide by the block is asked
for ``NCHW{b}c`` data and ``OIHW{b}i{b}o`` weights (``conv_layouts``: the image's stem too), and
Relax's ``ConvertLayout`` carries the blocked layout through the element-wise ops, pools and concats
after it, converting back only where an op cannot follow (a reshape or flatten, a convolution left in NCHW, the graph's output). The
weights' conversions are constants, folded at build time; the convolution itself is TOPI's
``conv2d_NCHWc``, which the ``tiled_reduction`` rule schedules like any other.

The block is the backend's ``conv_block`` (0: plain NCHW; ``--conv-layout`` on the command line): a
model-wide choice, so that no two neighbouring convolutions need a conversion between them; or, with
``auto``, one per stage of the model that tuning chooses (``tuner.layout_plan``).
``benchmarks/layouts.py`` times a model's builds in each layout against each other.
"""

from __future__ import annotations

BLOCKS = (0, 8, 16, -1)  # 0: plain NCHW; -1: chosen per stage (``tuner.layout_plan.AUTO``)
LAYOUTS = {"nchw": 0, "nchw8c": 8, "nchw16c": 16, "auto": -1}  # the names the command line takes


def conv_layouts(call, block: int) -> list[str]:
    """The data, weight and output layouts of ``call`` (a Relax ``nn.conv2d``) under ``block``: blocked
    where its channels divide by the block; a first convolution of fewer input channels (an image's 3)
    takes them as one block (NCHW3c, which is NHWC) and still writes the blocked layout; else NCHW."""
    attrs = call.attrs
    plain = ["NCHW", "OIHW", "NCHW"]
    if block == 0 or int(attrs.groups) != 1 or (attrs.data_layout, attrs.kernel_layout) != ("NCHW", "OIHW"):
        return plain
    data, weight = (arg.ty for arg in call.args)
    try:
        in_channels, out_channels = int(data.shape[1]), int(weight.shape[0])
    except (TypeError, AttributeError):  # a symbolic channel count
        return plain
    if out_channels % block:
        return plain
    in_block = block if in_channels % block == 0 else in_channels if in_channels < block else 0
    if not in_block:
        return plain
    return [f"NCHW{in_block}c", f"OIHW{in_block}i{block}o", f"NCHW{block}c"]


def blocked_layout(block):
    """The pass: convolutions that can, in ``NCHW{block}c``, the graph between them following.
    ``block`` may be a dict {(h, w): block} by the spatial size a convolution writes (0 where absent)."""
    import tvm
    from tvm import relax

    from .rewrites import builder_pass

    def layouts(call):  # called for every op; only convolutions are asked for a layout
        if getattr(call.op, "name", None) != "relax.nn.conv2d":
            return {}
        chosen = block if isinstance(block, int) else block.get(_spatial(call), 0)
        return {"relax.nn.conv2d": conv_layouts(call, chosen)}

    # an activation with two blocked users (a conv and a residual add) is converted for each: CSE keeps one
    return tvm.transform.Sequential([builder_pass(_full_rank_constants(), "FullRankConstants"),
                                     relax.transform.ConvertLayout({"relax.nn.conv2d": ["NCHW", "OIHW"]}, layouts),
                                     relax.transform.EliminateCommonSubexpr()], name="BlockedConvLayout")


def _spatial(call):
    try:
        return tuple(int(d) for d in list(call.ty.shape)[2:4])
    except TypeError:  # a symbolic size
        return None


def legalize_conv2d(bb, call):
    """Legalize ``nn.conv2d``: a blocked one as TOPI's ``conv2d_NCHWc`` (which TVM's own legalization
    leaves alone), a plain 3x3 one with many channels as Winograd's (``tuner.winograd``), a plain 1x1
    one over a flat row of pixels (``tuner.pointwise_conv``), any other as TVM does."""
    from tvm import topi
    from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

    from .pointwise_conv import is_pointwise, legalize_pointwise
    from .winograd import is_winograd, legalize_winograd

    attrs = call.attrs
    if is_winograd(call):
        return legalize_winograd(bb, call)
    if is_pointwise(call):
        return legalize_pointwise(bb, call)
    if len(attrs.data_layout) == 4:
        return _nn_conv2d(bb, call)
    return bb.call_te(topi.nn.conv2d_NCHWc, call.args[0], call.args[1], attrs.strides, attrs.padding,
                      attrs.dilation, attrs.data_layout, attrs.out_layout, call.ty.dtype,
                      primfunc_name_hint="conv2d_NCHWc")


_BINARY = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum", "relax.minimum"}


def _full_rank_constants():
    """A mutator class: a binary op's constant of lower rank than its other operand (DenseNet's
    per-channel ``Mul`` by a [C, 1, 1] tensor) gets the leading 1s that broadcasting implies, so that
    the layout conversion sees its channel axis and converts it instead of the activation."""
    from tvm import relax
    from tvm.ir.expr import Constant

    @relax.expr_functor.mutator
    class FullRank(relax.PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if getattr(call.op, "name", None) not in _BINARY:
                return call
            ranks = [arg.ty.ndim for arg in call.args]
            args = [relax.const(_leading_ones(arg.value.numpy(), max(ranks)))
                    if isinstance(arg, Constant) and 0 < rank < max(ranks) else arg
                    for arg, rank in zip(call.args, ranks)]
            return relax.Call(call.op, args, call.attrs) if any(a is not b for a, b in zip(args, call.args)) else call

    return FullRank


def _leading_ones(value, rank: int):
    return value.reshape((1,) * (rank - value.ndim) + value.shape)
