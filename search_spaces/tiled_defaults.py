"""The heuristic default config of the ``tiled_reduction`` rule (no measuring).

* Padding is computed per parallel tile (``compute_at``) rather than inlined: an
  inlined ``if_then_else`` in the inner loop is slow (docs/benchmarks.md).
* Vector axis: the contiguous output axis when it has 16 or more power-of-two
  lanes (matmul columns); otherwise an axis with such lanes along which some input
  is broadcast and whose other inputs can be packed (conv output channels, with
  the weights packed), if each output sums at least 16 products (else the
  transposing write-back costs more); otherwise the contiguous axis anyway
  (depthwise conv, pooling, 1x1 convs with few input channels).
* Register block: the vector tile (up to 64 lanes) times "rows" of axes along
  which the vector operand is reused, as many accumulator registers as the
  target's vector unit gives (16 zmm with AVX-512, 12 ymm with AVX2); among the
  blocks with the most accumulators, the one two registers wide, the others being
  "tied" configs that a search measures right after the default.
* Parallel: S0 tiles give at least 8 iterations per core (fewer when a task
  would do less than 32K multiply-adds), taken first from sliding-window axes
  (output rows), then from the outer axes.
* Reduction: the first reduction axis keeps an inner chunk of up to 256, kernel
  window axes stay whole and inner; where that chunks the axis, the default with
  the whole axis inner is a "tied" config too. Where each core sweeps a whole
  NCHW map (the weights outweigh it), chunks of 32 with the pixel blocks inside.
* Packing wherever it changes a layout (conv weights blocked, matmul weights in
  panels), as BLAS and ONNX Runtime's NCHWc kernels do.
"""

from __future__ import annotations

import math

from .analysis import Axis
from .tiling import LANES, largest_divisor, smallest_divisor_at_least, vector_lanes

CHUNKS_PER_CORE = 8
MIN_MACS_PER_TASK = 1 << 15  # a parallel task costs about a microsecond to launch
REDUCE_CHUNK = 256
STREAMED_CHUNK = 32  # reduction chunk when the pixels loop inside it (``_pixels_inner``)
STREAMED_OUTPUTS = 1 << 14  # a core's outputs of one parallel chunk that may all accumulate inside it
MIN_REDUCE_FOR_TRANSPOSE = 16  # multiply-adds per output that pay for a blocked accumulator
MAX_STENCIL_LANES = 32  # a pool's or a depthwise conv's whole output row as its vector, up to this width


def full_lanes(axis: Axis, lanes: int = LANES) -> bool:
    """Whether ``axis`` fills ``lanes`` lanes (by default a 512-bit register's worth, whatever the target)."""
    return vector_lanes(axis.extent) >= lanes


def users_of(reads, name: str) -> list:
    return [r for r in reads if any(name in dim for dim in r.dims)]


def vectorizes_well(rule, axis: Axis, pad_mode: str) -> bool:
    """Some input is broadcast along ``axis`` and every input that uses it has it
    in its last dimension or in a packable one."""
    reads = rule.reads[pad_mode]
    packable = {buffer for buffer, _ in rule.packable[pad_mode][axis.name]}
    users = users_of(reads, axis.name)
    return len(users) < len(reads) and all(
        r.buffer in packable or (r.dims and axis.name in r.dims[-1]) for r in users)


def default_pad(rule) -> str:
    return "compute_at" if rule.pad_block else "inline"


def default_vector_axis(rule) -> Axis | None:
    candidates = [a for a in rule.spatial if a.extent > 1]
    if not candidates:
        return None
    last = rule.spatial[-1] if rule.spatial[-1].extent > 1 else None
    reads = rule.reads[default_pad(rule)]
    weighted = {a.name for a in _weight_indexed(rule)}
    # along the weights' axes one register suffices (a blocked conv's 8 output channels on AVX2)
    last_lanes = rule.unit.lanes if last is not None and last.name in weighted else LANES
    if last is not None and full_lanes(last, last_lanes) and not any(last.name in r.strided for r in reads):
        return last  # unless some input is read with a stride along it (a stride-2 conv): no vector load
    reduce_size = math.prod(a.extent for a in rule.reduce)
    for axis in candidates:
        transposed = rule.accumulator_dim(axis.name) is not None
        if transposed and reduce_size < MIN_REDUCE_FOR_TRANSPOSE:
            continue  # the scalar, transposing write-back would cost more than it saves
        # along the weights' axes one register suffices: the weights are packed once, at build time
        lanes = rule.unit.lanes if axis.name in weighted else LANES
        if full_lanes(axis, lanes) and vectorizes_well(rule, axis, default_pad(rule)):
            return axis
    return last or max(candidates, key=lambda a: a.extent)


def _row_axes(rule, vector: Axis | None) -> list:
    """Axes (inner first) along which every input that the vector axis indexes is
    reused, so a register row costs no extra vector load."""
    reads = rule.reads[default_pad(rule)]
    vector_users = users_of(reads, vector.name) if vector is not None else reads
    return [a for a in reversed(rule.spatial)
            if a is not vector and a.extent > 1
            and not any(users_of(vector_users, a.name))]


def _sharing_a_dim(rule, axes, others) -> list:
    """Those of ``axes`` that index some input dimension together with one of ``others``."""
    reads = rule.reads[default_pad(rule)]
    names = {a.name for a in others}
    return [a for a in axes if any(a.name in dim and dim & names for r in reads for dim in r.dims)]


def _window_axes(rule) -> list:
    """The spatial axes a window slides along (output rows and columns)."""
    return _sharing_a_dim(rule, rule.spatial, [a for a in rule.reduce if a.extent > 1])


def _elements(rule, access) -> int:
    """About how many elements ``access`` reads: per dimension, the largest extent indexing it."""
    extents = {a.name: a.extent for a in rule.anchor.axes}
    return math.prod(max((extents.get(name, 1) for name in dim), default=1) for dim in access.dims)


def _weight_indexed(rule) -> list:
    """The spatial axes that index the weights (the layout-free inputs): output channels, columns."""
    used = {name for r in rule.reads[default_pad(rule)] if r.buffer in rule.info.layout_free
            for dim in r.dims for name in dim}
    return [a for a in rule.spatial if a.name in used]


def _weight_axes(rule) -> list:
    """The spatial axes that index the weights, when the weights outweigh the other inputs (a
    dense layer, a late conv): splitting those across the cores gives each core its own part of
    the weights, which then stays in its caches while the rows stream by, instead of every core
    streaming all of them from memory. Empty otherwise."""
    reads = rule.reads[default_pad(rule)]
    weights = [r for r in reads if r.buffer in rule.info.layout_free]
    others = [r for r in reads if r.buffer not in rule.info.layout_free]
    if not weights or sum(_elements(rule, r) for r in weights) <= sum(_elements(rule, r) for r in others):
        return []
    return _weight_indexed(rule)


def _parallel_split(rule, rest: dict) -> dict:
    """S0 factors, until the parallel loop has enough iterations: the weights' axes first when they
    outweigh the other inputs (``_weight_axes``), else the window axes (output rows), else the axes
    that do not index the weights (a 1x1 conv's rows: each core streams its own rows of the input, the
    weights staying in its caches, instead of every core streaming the whole input), then the rest."""
    macs = math.prod(a.extent for a in rule.spatial + rule.reduce)
    want = min(CHUNKS_PER_CORE * rule.num_cores, max(1, macs // MIN_MACS_PER_TASK))
    weighted = _weight_indexed(rule)
    first = _weight_axes(rule) or _window_axes(rule) or [a for a in rule.spatial if weighted and a not in weighted]
    order = first + [a for a in rule.spatial if a not in first]
    outer = {a.name: 1 for a in rule.spatial}
    for axis in order:
        need = math.ceil(want / math.prod(outer.values()))
        if need <= 1:
            break
        factor = largest_divisor(rest[axis.name], need)
        if factor < need and rest[axis.name] > 1:
            factor = smallest_divisor_at_least(rest[axis.name], need)
        outer[axis.name] = factor
    return outer


def _register_blocks(rule, vector: Axis | None) -> list:
    """S3 tiles: vector lanes times register rows, ``rule.unit.accumulators`` registers. Narrower
    vectors are tried when rows do not fit (7x7 maps: 32 lanes x 7 rows beats 64 lanes x 1 row
    with AVX-512, 8 x 7 beats 64 x 1 with AVX2); the blocks of more than one row come first (a
    single row reloads its weight vectors for every input value), then those with the most
    accumulators, the one two registers wide first, then widest vector first. The count of accumulators cannot tell the tied blocks
    apart (their measured speeds differ by target: docs/benchmarks.md), so the others are
    measured next to the default. A vector wider than one register that does not fill whole
    registers (14 lanes with AVX2's 8) is never a default: LLVM splits it unevenly and slowly."""
    stencil = _stencil_block(rule, vector)
    if stencil is not None:
        return [stencil]
    rows_axes = _row_axes(rule, vector)
    widths = [vector_lanes(vector.extent)] if vector is not None else [1]
    unit = rule.unit
    while widths[-1] > unit.lanes and widths[-1] % 2 == 0:
        widths.append(widths[-1] // 2)
    widths = [w for w in widths if w <= unit.lanes or w % unit.lanes == 0] or \
        [largest_divisor(vector.extent, unit.lanes)]
    scored = []
    for lanes in widths:
        inner = {a.name: 1 for a in rule.spatial}
        if vector is not None:
            inner[vector.name] = lanes
        regs = math.ceil(lanes / unit.lanes)
        budget = max(1, unit.accumulators // regs)
        for axis in rows_axes:
            inner[axis.name] = largest_divisor(axis.extent, budget)
            budget //= inner[axis.name]
        rows = math.prod(v for k, v in inner.items() if vector is None or k != vector.name)
        scored.append(((rows > 1, regs * rows), inner))
    best = max(score for score, _ in scored)
    tied = [inner for score, inner in scored if score == best]
    # the default: a vector two registers wide, as BLAS micro-kernels have it (6x16 with AVX2, 14x32
    # with AVX-512); widest first among the others
    two = [inner for inner in tied if vector is not None and inner[vector.name] == 2 * unit.lanes]
    return two + [inner for inner in tied if inner not in two]


def _stencil_block(rule, vector: Axis | None) -> dict | None:
    """The register block of a stencil (a pool, a depthwise conv: no input reused along an output
    axis but through the window, and no weight along the vector): the whole output row as the vector,
    up to ``MAX_STENCIL_LANES`` lanes even where they do not fill whole registers, and as many rows as
    the accumulators allow. 3x3 pools over 14- or 28-wide maps ran about twice as fast so as with 7
    lanes and one row (Inception v2), MobileNetV2's 28x28 depthwise conv too: rows share the input rows
    of their windows (and a depthwise conv's 9 weights), and a whole row needs no remainder loop. None
    for other blocks, or where an input is read with a stride along the row (its lanes are gathered)."""
    if vector is None or vector is not rule.spatial[-1] or vector.extent > MAX_STENCIL_LANES \
            or vector in _weight_indexed(rule) or _row_axes(rule, vector):
        return None
    if any(vector.name in r.strided for r in rule.reads[default_pad(rule)]):
        return None
    inner = {a.name: 1 for a in rule.spatial}
    inner[vector.name] = vector.extent
    budget = max(1, rule.unit.accumulators // math.ceil(vector.extent / rule.unit.lanes))
    for axis in _window_axes(rule):
        if axis is not vector:
            inner[axis.name] = largest_divisor(axis.extent, budget)
            budget //= inner[axis.name]
    return inner


def _pixels_inner(rule) -> list:
    """The pixel axes to tile inside the reduction chunk, or none. Where the weights outweigh the
    input (a convolution on a 14x14 or 7x7 map, in NCHW) each core sweeps the whole input once per
    block of output channels; a register block reads one line per input channel for a few pixels,
    and with the pixels outside the reduction the next block along the row finds those lines gone
    from L1 (256 channels x 2 rows is already 32 KiB). With the reduction chunked and the pixels
    inside the chunk, neighbouring blocks share the chunk's lines (docs/benchmarks.md). Only where
    the input's contiguous dimension is indexed by pixels, not by the reduction: a blocked layout or
    a matmul reads its lines whole already."""
    if not _weight_axes(rule) or not rule.reduce:
        return []
    weighted = set(_weight_indexed(rule))
    reads = [r for r in rule.reads[default_pad(rule)] if r.buffer not in rule.info.layout_free and r.dims]
    reduce = {a.name for a in rule.reduce if a.extent > 1}
    pixels = [a for a in rule.spatial if a not in weighted and a.extent > 1]
    along_lines = reduce - {a.name for a in _sharing_a_dim(rule, rule.reduce, rule.spatial)}  # not the window
    if not reads or not pixels or any(r.dims[-1] & along_lines for r in reads):
        return []
    if not any(a.name in r.dims[-1] for a in pixels for r in reads):
        return []
    return pixels


def default_tiles(rule, vector: Axis | None, inner: dict, reduce_chunk: float = REDUCE_CHUNK) -> dict:
    rest = {a.name: a.extent // inner[a.name] for a in rule.spatial}
    outer = _parallel_split(rule, rest)
    streamed = {a.name for a in _pixels_inner(rule) if rest[a.name] > outer[a.name]}
    if streamed and reduce_chunk == REDUCE_CHUNK:
        reduce_chunk = STREAMED_CHUNK
    # the output channels' blocks inside the chunk too where the chunk's outputs fit in L2: the
    # chunk of input is then read once, not once per block
    if streamed:
        chunk_outputs = math.prod(a.extent // outer[a.name] for a in rule.spatial)
        if chunk_outputs <= STREAMED_OUTPUTS:
            streamed = {a.name for a in rule.spatial}
    tiles = {}
    for axis in rule.spatial:
        if axis.extent > 1:
            s0 = outer[axis.name]
            s1 = rest[axis.name] // s0
            tiles["tile_" + axis.name] = (s0, 1, s1, inner[axis.name]) if axis.name in streamed else \
                (s0, s1, 1, inner[axis.name])
    for index, axis in enumerate(a for a in rule.reduce if a.extent > 1):
        chunk = largest_divisor(axis.extent, reduce_chunk) if index == 0 else axis.extent
        tiles["tile_" + axis.name] = (axis.extent // chunk, chunk)
    return tiles


def default_values(rule) -> dict:
    vector = default_vector_axis(rule)
    return _values(rule, vector, _register_blocks(rule, vector)[0])


def tied_values(rule) -> list:
    """The default config with each other register block of as many accumulators, then the
    default with its first reduction axis whole and inner, where the default chunks it: neither
    chunk wins everywhere (docs/benchmarks.md)."""
    vector = default_vector_axis(rule)
    default, *others = _register_blocks(rule, vector)
    whole = _values(rule, vector, default, reduce_chunk=math.inf)
    tied = [_values(rule, vector, inner) for inner in others]
    return tied + ([whole] if whole != _values(rule, vector, default) else [])


def _values(rule, vector: Axis | None, inner: dict, reduce_chunk: float = REDUCE_CHUNK) -> dict:
    values = {"order": "SSRSRS", "parallel": 1, "write_back": 1, "unroll": 64}
    if rule.pad_block:
        values["pad"] = default_pad(rule)
    if vector is not None:
        values["vector_axis"] = vector.name
    values.update(default_tiles(rule, vector, inner, reduce_chunk))
    if "pack" in rule.knobs:
        lanes = values["tile_" + vector.name][-1] if vector is not None else 1
        pad = values.get("pad", "inline")
        values["pack"] = lanes > 1 and rule.pack_effect(values.get("vector_axis"), pad)
    return values
