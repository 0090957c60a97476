"""1x1 convolutions over a flat row of pixels.

An NCHW convolution with a 1x1 kernel, stride 1 and no padding multiplies the weights ``[K, C]`` by
the input's ``[C, H*W]``. Written over the map's rows and columns, a register block of pixels must
divide the width, 2 or 7 of a 14-wide map, so AVX2 filled 6 or 7 of its 12 accumulators; over one
axis of ``H*W`` pixels it takes 4 of 196 (or 16 of 784). So the input is reshaped to ``[N, C, H*W]``
(a view, no copy) and the kernel computes ``out[n, k, p]``, writing NCHW through a reshape in its
own function, after which the epilogue (bias, residual add, ReLU) still fuses. Alone, 1x1
convolutions on 14x14 to 56x56 maps ran 8-20 % faster so, by default or tuned alike; whole models
gained untuned only (Inception v2 7 %), tuning finding 4-D configs as fast (docs/benchmarks.md).
Convolutions in a blocked layout keep their own kernel (``tuner.layout``), and so do those for a
GPU, where this was not measured.
"""

from __future__ import annotations

# Only where a schedule can vectorize the output channels (whole 8-lane registers, 16 or more products
# per output): otherwise the vector runs along the pixels, and a 14-wide row gives 7 lanes where 196
# pixels give 4.
MIN_IN_CHANNELS = 16
OUT_CHANNEL_MULTIPLE = 8


def plain_cpu_conv(call) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The data and weight shapes of ``call`` (a Relax ``nn.conv2d``) where it is an NCHW/OIHW
    convolution of static shape, stride 1, no dilation and one group, legalized for a CPU; else None."""
    import tvm

    target = tvm.target.Target.current(allow_none=True)
    if target is None or target.kind.name != "llvm":
        return None
    attrs = call.attrs
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NCHW", "OIHW", "NCHW") or int(attrs.groups) != 1:
        return None
    if any(int(s) != 1 for s in attrs.strides) or any(int(d) != 1 for d in attrs.dilation):
        return None
    data, weight = _static_shape(call.args[0]), _static_shape(call.args[1])
    return None if data is None or weight is None else (data, weight)


def is_pointwise(call) -> bool:
    """Whether ``call`` is a plain 1x1 convolution (``plain_cpu_conv``) without padding, channels as above."""
    shapes = plain_cpu_conv(call)
    if shapes is None or any(int(p) for p in call.attrs.padding):
        return False
    out_channels, in_channels, *kernel = shapes[1]
    return kernel == [1, 1] and in_channels >= MIN_IN_CHANNELS and out_channels % OUT_CHANNEL_MULTIPLE == 0


def legalize_pointwise(bb, call):
    """The legalized call: a reshape of the input to ``[N, C, H*W]`` and ``pixel_rows_conv2d``."""
    from tvm import relax

    batch, channels, height, width = _static_shape(call.args[0])
    rows = bb.emit(relax.op.reshape(call.args[0], [batch, channels, height * width]))
    return bb.call_te(pixel_rows_conv2d, rows, call.args[1], height, str(call.ty.dtype), primfunc_name_hint="conv2d")


def _static_shape(expr) -> tuple[int, ...] | None:
    """The shape of ``expr`` as integers; None where a dimension is symbolic."""
    try:
        return tuple(int(d) for d in list(expr.ty.shape))
    except (TypeError, ValueError, AttributeError):
        return None


def pixel_rows_conv2d(data, weight, height: int, out_dtype: str):
    """``out[n, k, y, x] = sum_c data[n, c, y * W + x] * weight[k, c, 0, 0]``, the sum computed over the
    flat pixel axis and reshaped to NCHW in the same function."""
    from tvm import te

    batch, channels, pixels = (int(d) for d in data.shape)
    out_channels = int(weight.shape[0])
    width = pixels // height
    rc = te.reduce_axis((0, channels), "rc")
    # named as TOPI's conv2d_nchw names its axes, the pixels ``pp``
    flat = te.compute((batch, out_channels, pixels), lambda nn, ff, pp: te.sum(
        data[nn, rc, pp].astype(out_dtype) * weight[ff, rc, 0, 0].astype(out_dtype), axis=rc), name="conv2d_rows")
    return te.compute((batch, out_channels, height, width), lambda n, k, y, x: flat[n, k, y * width + x],
                      name="T_reshape")
