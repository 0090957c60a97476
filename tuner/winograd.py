"""3x3 convolutions as Winograd F(2x2, 3x3): 16 multiplies where the direct sum takes 36.

A 3x3 convolution of stride 1 computes each 2x2 block of outputs from a 4x4 tile of its input with
16 multiplies per input and output channel pair, where the direct one takes 36 (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016). Legalized here as three functions:

* ``winograd_input``: ``V[e, c, t] = (Bᵀ d B)[e]`` for each 4x4 tile ``d`` of the zero-padded input
  (tiles two apart, ``t`` over the batch and the tile rows and columns);
* ``winograd_gemm``: ``M[e, k, t] = Σ_c U[e, k, c] V[e, c, t]``, a batch of 16 matrix products,
  tuned by the ``tiled_reduction`` rule like any matmul; ``U = G w Gᵀ`` is computed from the
  weights here, once, at build time;
* ``winograd_output``: ``Y[n, k, y, x] = (Aᵀ m A)[y mod 2, x mod 2]`` of the tile's ``M``, in
  NCHW, so that the bias, residual add and activation after the convolution fuse into it.

The transforms cost memory passes over ``C + K`` planes of 16 values per tile, which the multiply
saves only where the channel counts are large: for 64 in and out channels on a 56x56 map the three
functions took longer than the tuned direct convolution, for 128 and 256 channels far less
(docs/benchmarks.md, "Winograd"). Hence ``MIN_CHANNEL_RATIO`` on ``C·K / (C + K)``, and
``MIN_TILES``: on small maps the transformed weights, larger than the direct ones, cost more to read
than the multiplies saved. The
transforms are scheduled by the ``winograd`` rule (``search_spaces.winograd``). The results differ
from the direct sum's by rounding only (about 1e-6 of the output's magnitude).
"""

from __future__ import annotations

import numpy as np

from search_spaces.winograd import INPUT_BLOCK, OUT_TILE, OUTPUT_BLOCK, TILE

MIN_CHANNEL_RATIO = 32  # C*K/(C+K): 64 in and 64 out channels give 32 and won, 128 in and 32 out 25.6 and lost
# The transformed weights are 16/9 of the direct ones and are read once per call: on a 7x7 map (16 tiles)
# ResNet-50's 512-channel convolutions read 16.8 MB for 6 multiply-adds per weight, and lost in the model
MIN_TILES = 32

OPAQUE = 8  # TVM's OpPatternKind kOpaque

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], "float64")
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], "float64")
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], "float64")


def is_winograd(call) -> bool:
    """Whether ``call`` (a Relax ``nn.conv2d``) is legalized as Winograd: a plain float32 3x3 convolution
    (``plain_cpu_conv``) of padding 1, constant weights, channels and tiles as above."""
    from tvm.ir.expr import Constant

    from .pointwise_conv import plain_cpu_conv

    shapes = plain_cpu_conv(call)
    if shapes is None or not isinstance(call.args[1], Constant) or [int(p) for p in call.attrs.padding] != [1, 1, 1, 1]:
        return False
    if str(call.ty.dtype) != "float32" or str(call.args[0].ty.dtype) != "float32":
        return False
    data, (out_channels, in_channels, *kernel) = shapes
    ratio = in_channels * out_channels / (in_channels + out_channels)
    tiles = data[0] * _tiles(data[2]) * _tiles(data[3])
    return kernel == [3, 3] and ratio >= MIN_CHANNEL_RATIO and tiles >= MIN_TILES


def transformed_weight(weight: np.ndarray) -> np.ndarray:
    """``U[e, k, c] = (G w[k, c] Gᵀ)[e]`` for weights ``[K, C, 3, 3]``, computed in float64."""
    u = np.einsum("ia,kcab,jb->ijkc", G, weight.astype("float64"), G)
    return u.reshape(TILE * TILE, *weight.shape[:2]).astype(weight.dtype)


def legalize_winograd(bb, call):
    """The legalized call: the three functions of the module docstring."""
    from tvm import relax

    batch, _, height, width = (int(d) for d in call.args[0].ty.shape)
    weight = relax.const(transformed_weight(call.args[1].value.numpy()))
    tiles = bb.emit_te(input_transform, call.args[0], primfunc_name_hint=INPUT_BLOCK)
    _fused_with_nothing(bb, tiles)
    products = bb.emit_te(batch_gemm, weight, tiles, primfunc_name_hint="winograd_gemm")
    return bb.call_te(output_transform, products, batch, height, width, primfunc_name_hint=OUTPUT_BLOCK)


def _fused_with_nothing(bb, var) -> None:
    """Mark the function ``var`` is bound to opaque to fusion: injective, it would otherwise fuse with
    the previous convolution's output transform or a concat before it, and the ``winograd`` rule
    schedules the transform alone."""
    call = bb.lookup_binding(var)
    gvar = call.args[0]
    bb.update_func(gvar, bb.get()[gvar].with_attr("op_pattern", OPAQUE))


def _tiles(size: int) -> int:
    return -(-size // OUT_TILE)


def _sum(terms):
    """``Σ coefficient · value`` over the nonzero coefficients, ±1 as an add or a subtract."""
    from tvm import tirx

    total = None
    for coefficient, value in terms:
        if coefficient == 0:
            continue
        term = value if coefficient == 1 else -value if coefficient == -1 else value * tirx.const(coefficient, "float32")
        total = term if total is None else total + term
    return total


def _by_place(index, values):
    """``values[index]`` for a loop index: a chain of selects that unrolling the loop resolves."""
    from tvm import tirx

    chosen = values[-1]
    for place in range(len(values) - 2, -1, -1):
        chosen = tirx.if_then_else(index == place, values[place], chosen)
    return chosen


def _transformed(matrix, load, i, j):
    """``(matrix · X · matrixᵀ)[i, j]`` for the 4x4 tile ``X[a, b] = load(a, b)`` and loop indices ``i, j``."""
    size = matrix.shape[0]

    def place(row, column):
        return _sum((matrix[row, a] * matrix[column, b], load(a, b)) for a in range(TILE) for b in range(TILE))

    return _by_place(i, [_by_place(j, [place(row, column) for column in range(size)]) for row in range(size)])


def input_transform(data):
    from tvm import te, topi

    batch, channels, height, width = (int(d) for d in data.shape)
    rows, columns = _tiles(height), _tiles(width)
    padded = topi.nn.pad(data, [0, 0, 1, 1], [0, 0, 2 * rows + 1 - height, 2 * columns + 1 - width],
                         name="winograd_pad")

    def value(e, c, t):
        n, y, x = t // (rows * columns), t % (rows * columns) // columns * OUT_TILE, t % columns * OUT_TILE

        return _transformed(B_T, lambda a, b: padded[n, c, y + a, x + b], e // TILE, e % TILE)

    return te.compute((TILE * TILE, channels, batch * rows * columns), value, name=INPUT_BLOCK)


def batch_gemm(weight, tiles):
    from tvm import te

    places, out_channels, channels = (int(d) for d in weight.shape)
    count = int(tiles.shape[2])
    rc = te.reduce_axis((0, channels), "rc")
    return te.compute((places, out_channels, count),
                      lambda e, k, t: te.sum(weight[e, k, rc] * tiles[e, rc, t], axis=rc), name="winograd_gemm")


def output_transform(products, batch: int, height: int, width: int):
    from tvm import te

    out_channels = int(products.shape[1])
    rows, columns = _tiles(height), _tiles(width)

    def value(n, k, y, x):
        t = n * rows * columns + y // OUT_TILE * columns + x // OUT_TILE

        return _transformed(A_T, lambda a, b: products[a * TILE + b, k, t], y % OUT_TILE, x % OUT_TILE)

    return te.compute((batch, out_channels, height, width), value, name=OUTPUT_BLOCK)
