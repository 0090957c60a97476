"""Graph rewrites of pooling ops (registered in ``tuner.rewrites.REWRITES``).

* ``avg_pool_divisor_map``: an average pool that leaves the padding out of its count (ONNX's
  default, ``count_include_pad=0``) divides each output by the number of window elements inside the
  input. TVM's pooling computes that number per output element in 64-bit integer min/max
  arithmetic, which AVX2 cannot vectorize: Inception v2's 3x3 average pools ran at 2-3x ONNX
  Runtime's time. The number depends only on the output position, so the pool becomes a sum over the
  window times a constant map ``1 / count[y, x]``, read in the epilogue.
"""

from __future__ import annotations

import numpy as np


def avg_pool_divisor_map():
    """The pass described in the module docstring."""
    from tvm import relax

    from .rewrites import builder_pass

    @relax.expr_functor.mutator
    class DivisorMap(relax.PyExprMutator):
        def visit_call_(self, call):
            call = self.visit_expr_post_order(call)
            if getattr(call.op, "name", None) != "relax.nn.avg_pool2d" or not _rewritable(call):
                return call
            attrs = call.attrs
            scale = relax.const(_reciprocal_counts(call), str(call.ty.dtype))
            return self.builder_.call_te(
                _scaled_sum_pool, call.args[0], scale, [int(k) for k in attrs.pool_size],
                [int(s) for s in attrs.strides], [int(p) for p in attrs.padding], primfunc_name_hint="avg_pool2d")

    return builder_pass(DivisorMap, "AvgPoolDivisorMap")


def _rewritable(call) -> bool:
    """NCHW, padded, not counting the padding, no ceil mode or dilation, static shapes."""
    attrs = call.attrs
    if bool(attrs.count_include_pad) or bool(attrs.ceil_mode) or attrs.layout != "NCHW" \
            or (attrs.out_layout or "NCHW") != "NCHW":
        return False
    if not any(int(p) for p in attrs.padding) or any(int(d) != 1 for d in attrs.dilation):
        return False
    try:
        [int(d) for d in call.args[0].ty.shape] + [int(d) for d in call.ty.shape]
    except (TypeError, ValueError):
        return False
    return True


def _counts(size: int, out: int, kernel: int, stride: int, before: int) -> np.ndarray:
    """For each output position along one axis: how many window positions fall inside the input."""
    starts = np.arange(out) * stride - before
    return np.clip(starts + kernel, 0, size) - np.clip(starts, 0, size)


def _reciprocal_counts(call) -> np.ndarray:
    """``1 / count`` per output position, shaped [out_h, out_w]."""
    attrs = call.attrs
    _, _, height, width = (int(d) for d in call.args[0].ty.shape)
    _, _, out_h, out_w = (int(d) for d in call.ty.shape)
    kernel_h, kernel_w = (int(k) for k in attrs.pool_size)
    stride_h, stride_w = (int(s) for s in attrs.strides)
    top, left = int(attrs.padding[0]), int(attrs.padding[1])
    rows = _counts(height, out_h, kernel_h, stride_h, top)
    cols = _counts(width, out_w, kernel_w, stride_w, left)
    return 1.0 / np.outer(rows, cols).astype(np.float64)


def _scaled_sum_pool(data, scale, kernel, strides, padding):
    """out[n, c, y, x] = the sum over the window (zero padding) times ``scale[y, x]``."""
    from tvm import te, topi

    n, channels, _, _ = (int(d) for d in data.shape)
    out_h, out_w = (int(d) for d in scale.shape)
    top, left, bottom, right = padding
    padded = topi.nn.pad(data, [0, 0, top, left], [0, 0, bottom, right])
    ry = te.reduce_axis((0, kernel[0]), "ry")
    rx = te.reduce_axis((0, kernel[1]), "rx")
    pooled = te.compute(
        (n, channels, out_h, out_w),
        lambda b, c, y, x: te.sum(padded[b, c, y * strides[0] + ry, x * strides[1] + rx], axis=[ry, rx]),
        name="pool_sum")
    return te.compute(pooled.shape, lambda b, c, y, x: pooled[b, c, y, x] * scale[y, x], name="pool_avg")
