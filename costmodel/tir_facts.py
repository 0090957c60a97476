"""Cheap facts read from TIR that PerStoreFeature lacks: the loop nest of a
scheduled ``main`` (parallel, vector and unroll structure, work balance) and
the size of a task's computation (FLOPs, output size, reduction length).

``loop.heaviest_store_inner_work_<d>`` is the product of the extents of the ``d``
innermost loops around the heaviest store (``d`` = 1..8): where in the nest the
work sits. PerStoreFeature, pooled, gave identical rows to schedules that differ
only in which of two reduction loops the input channels of a 7x7 conv go to
(``tile_rc`` [3, 1] against [1, 3]), which differ in speed (docs/benchmarks.md).

Both read the function as scheduled, before any lowering: ``For`` loops with
their kind and annotations, ``SBlock``s with their iterators and buffers. Every
count and size is log-scaled with ``slog(x) = log2(1 + |x|)``, as PerStoreFeature
does, so that tasks of different sizes give values of similar range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import tvm
from tvm import tirx
from tvm.s_tir.stmt import SBlock

_PARALLEL = int(tirx.ForKind.PARALLEL)
_VECTORIZED = int(tirx.ForKind.VECTORIZED)
_UNROLLED = int(tirx.ForKind.UNROLLED)
_REDUCE = int(tirx.IterVar.CommReduce)
_UNROLL_PRAGMA = "pragma_auto_unroll_max_step"

_INNER_DEPTHS = 8

LOOP_FACT_NAMES = (
    "loop.blocks", "loop.loops", "loop.max_depth",
    "loop.parallel_loops", "loop.parallel_extent", "loop.parallel_balance", "loop.parallel_work_fraction",
    "loop.vector_loops", "loop.vector_lanes", "loop.vector_work_fraction",
    "loop.auto_unroll_max_step", "loop.unrolled_loops", "loop.unrolled_extent",
    "loop.alloc_buffers", "loop.alloc_bytes",
    "loop.total_work", "loop.heaviest_store_work", "loop.heaviest_store_inner_extent",
) + tuple(f"loop.heaviest_store_inner_work_{depth}" for depth in range(1, _INNER_DEPTHS + 1))

TASK_FACT_NAMES = (
    "task.flops", "task.output_elements", "task.input_elements", "task.reduction_iterations",
    "task.blocks", "task.reduction_blocks", "task.flops_per_byte",
)


def slog(value: float) -> float:
    return math.log2(1.0 + abs(float(value)))


def _int_extent(loop: tirx.For) -> int:
    """The loop's constant extent, or 1 for a symbolic one."""
    extent = loop.extent
    return int(extent.value) if isinstance(extent, tirx.IntImm) else 1


def _buffer_bytes(buffer_type) -> int:
    elements = 1
    for dim in buffer_type.shape:
        elements *= int(dim.value) if isinstance(dim, tirx.IntImm) else 1
    dtype = tvm.DataType(str(buffer_type.dtype))
    return elements * max(1, dtype.bits * dtype.lanes // 8)


@dataclass
class _Store:
    work: int  # product of the enclosing loops' extents
    parallel: bool
    vectorized: bool
    inner_extent: int
    extents: tuple = ()  # the enclosing loops' extents, outermost first


@dataclass
class _Nest:
    """What one walk over a scheduled function collects."""

    blocks: int = 0
    loops: int = 0
    max_depth: int = 0
    parallel_loops: int = 0
    parallel_extent: int = 0  # largest product of parallel extents over one store's nest
    vector_loops: int = 0
    vector_lanes: int = 0
    auto_unroll: int = 0
    unrolled_loops: int = 0
    unrolled_extent: int = 0
    alloc_buffers: int = 0
    alloc_bytes: int = 0
    stores: list = field(default_factory=list)


def _children(node) -> list:
    if isinstance(node, tirx.SeqStmt):
        return list(node.seq)
    if isinstance(node, tirx.BufferStore):
        return []
    children = []
    for name in ("block", "init", "body", "then_case", "else_case"):
        child = getattr(node, name, None)
        if isinstance(child, tirx.Stmt):
            children.append(child)
    return children


def _visit_loop(loop: tirx.For, nest: _Nest) -> None:
    kind, extent = int(loop.kind), _int_extent(loop)
    nest.loops += 1
    nest.parallel_loops += kind == _PARALLEL
    if kind == _VECTORIZED:
        nest.vector_loops += 1
        nest.vector_lanes = max(nest.vector_lanes, extent)
    if kind == _UNROLLED:
        nest.unrolled_loops += 1
        nest.unrolled_extent = max(nest.unrolled_extent, extent)
    step = loop.annotations.get(_UNROLL_PRAGMA) if loop.annotations else None
    if step is not None:
        nest.auto_unroll = max(nest.auto_unroll, int(step))


def _walk(node, loops: list, nest: _Nest) -> None:
    """Depth-first walk; ``loops`` holds the enclosing ``For`` nodes."""
    if isinstance(node, tirx.For):
        _visit_loop(node, nest)
        loops = loops + [node]
        nest.max_depth = max(nest.max_depth, len(loops))
    elif isinstance(node, SBlock):
        nest.blocks += 1
        for buffer in node.alloc_buffers:
            nest.alloc_buffers += 1
            nest.alloc_bytes += _buffer_bytes(buffer.ty)
    elif isinstance(node, tirx.BufferStore):
        kinds = [int(loop.kind) for loop in loops]
        parallel = math.prod(_int_extent(l) for l, k in zip(loops, kinds) if k == _PARALLEL)
        if _PARALLEL in kinds:
            nest.parallel_extent = max(nest.parallel_extent, parallel)
        extents = tuple(_int_extent(loop) for loop in loops)
        nest.stores.append(_Store(work=math.prod(extents), parallel=_PARALLEL in kinds,
                                  vectorized=_VECTORIZED in kinds, inner_extent=extents[-1] if extents else 1,
                                  extents=extents))
    for child in _children(node):
        _walk(child, loops, nest)


def loop_facts(func: tirx.PrimFunc, num_cores: int) -> list[float]:
    """The ``LOOP_FACT_NAMES`` values of a scheduled function."""
    nest = _Nest()
    _walk(func.body, [], nest)
    nest.blocks = max(0, nest.blocks - 1)  # the root block
    total_work = sum(store.work for store in nest.stores) or 1
    heaviest = max(nest.stores, key=lambda store: store.work, default=_Store(0, False, False, 0))
    parallel = nest.parallel_extent
    balance = parallel / (math.ceil(parallel / num_cores) * num_cores) if parallel else 0.0
    parallel_work = sum(store.work for store in nest.stores if store.parallel)
    vector_work = sum(store.work for store in nest.stores if store.vectorized)
    return [
        slog(nest.blocks), slog(nest.loops), slog(nest.max_depth),
        slog(nest.parallel_loops), slog(parallel), balance, parallel_work / total_work,
        slog(nest.vector_loops), slog(nest.vector_lanes), vector_work / total_work,
        slog(nest.auto_unroll), slog(nest.unrolled_loops), slog(nest.unrolled_extent),
        slog(nest.alloc_buffers), slog(nest.alloc_bytes),
        slog(total_work), slog(heaviest.work), slog(heaviest.inner_extent),
    ] + [slog(math.prod(heaviest.extents[-depth:])) for depth in range(1, _INNER_DEPTHS + 1)]


def _blocks(func: tirx.PrimFunc) -> list:
    found = []

    def visit(node) -> None:
        if isinstance(node, SBlock):
            found.append(node)
        for child in _children(node):
            visit(child)

    visit(func.body)
    return [block for block in found if block.name_hint != "root"]


def task_facts(func: tirx.PrimFunc) -> list[float]:
    """The ``TASK_FACT_NAMES`` values of an (unscheduled) task function."""
    blocks = _blocks(func)
    params = list(func.params)
    written = [any(region.source.same_as(param) for block in blocks for region in block.writes)
               for param in params]
    output_bytes = sum(_buffer_bytes(p.ty) for p, out in zip(params, written) if out)
    input_bytes = sum(_buffer_bytes(p.ty) for p, out in zip(params, written) if not out)
    output_elements = sum(_elements(p.ty) for p, out in zip(params, written) if out)
    input_elements = sum(_elements(p.ty) for p, out in zip(params, written) if not out)
    reduction_lengths = [math.prod(_dom_extent(iv) for iv in block.iter_vars if int(iv.iter_type) == _REDUCE)
                         for block in blocks if any(int(iv.iter_type) == _REDUCE for iv in block.iter_vars)]
    flops = float(tvm.s_tir.analysis.estimate_tir_flops(tvm.IRModule({"main": func})))
    return [
        slog(flops), slog(output_elements), slog(input_elements), slog(max(reduction_lengths, default=0)),
        slog(len(blocks)), slog(len(reduction_lengths)), slog(flops / max(1, input_bytes + output_bytes)),
    ]


def _elements(buffer_type) -> int:
    return math.prod(int(d.value) if isinstance(d, tirx.IntImm) else 1 for d in buffer_type.shape)


def _dom_extent(iter_var) -> int:
    extent = iter_var.dom.extent
    return int(extent.value) if isinstance(extent, tirx.IntImm) else 1
