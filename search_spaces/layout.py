"""Data-layout packing for the ``tiled_reduction`` rule's ``pack`` knob.

When the vectorized axis indexes a dimension of an input that is not its last
(a conv weight ``W[ff, rc, ry, rx]`` vectorized over ``ff``, or a transposed
matmul operand ``B[j, k]``), the input is copied once per call into a blocked
layout with that dimension split by the vector width and moved innermost
(``W[ff // 16, rc, ry, rx, ff % 16]``). A weight that it indexes in its last
dimension (a matmul's ``W[k, j]``) is cut into panels the width of the vector tile
(``W[j // 16, k, j % 16]``), so that each step down ``k`` reads one contiguous
row of 16 instead of a new row of ``W``, as BLAS packs its panels. The accumulator gets the same treatment
when the vector axis is not the output's last dimension, so that vector loads
and stores stay contiguous.

The copy of a parameter the function marks layout-free (a weight, see
``analysis.layout_free_params``) is annotated as MetaSchedule's layout-rewrite
preprocessing block: TVM's ``SplitLayoutRewritePreproc`` can then move it into a
function of its own, which a model build runs once, on the constant weights.
"""

from __future__ import annotations

from tvm.s_tir import Schedule
from tvm.tirx import IndexMap, IntImm

from .analysis import block_reads
from .common import loop_extent

PREPACK_ANNOTATION = "meta_schedule.layout_rewrite_preproc"


def packable_inputs(sch: Schedule, block_name: str, spatial_names: list,
                    unit_names: set, layout_free: frozenset) -> dict:
    """``{axis name: [(buffer, dim), ...]}``: reads of ``block_name`` with a
    dimension indexed by that spatial axis alone (iterators of extent 1 aside),
    when that dimension is not the buffer's last, or, for the ``layout_free`` buffers
    (weights, whose copy is made once ahead of time), also when it is: a matmul
    weight ``B[k, j]`` vectorized over ``j`` becomes panels ``B[j // L, k, L]``, each
    read down ``k`` contiguously, as BLAS packs it."""
    found = {name: [] for name in spatial_names}
    for access in block_reads(sch.get(sch.get_sblock(block_name))):
        dims = access.dims if access.buffer in layout_free else access.dims[:-1]
        for dim, used in enumerate(dims):
            used = used - unit_names
            if len(used) == 1 and next(iter(used)) in found:
                found[next(iter(used))].append((access.buffer, dim))
    return found


def blocked_map(shape, dim: int, lanes: int) -> IndexMap:
    """Index map moving ``dim`` innermost, split by ``lanes``: (d // L, others..., d % L);
    a plain move when the lanes cover the whole dimension."""

    extent = int(shape[dim])

    def mapping(*idx):
        if lanes >= extent:
            return [*idx[:dim], *idx[dim + 1:], idx[dim]]
        return [idx[dim] // lanes, *idx[:dim], *idx[dim + 1:], idx[dim] % lanes]

    return IndexMap.from_func(mapping, ndim=len(shape), index_dtype=str(shape[dim].ty))


def _read_index(sch: Schedule, block, buffer: str) -> int:
    reads = sch.get(block).reads
    return next(i for i, r in enumerate(reads) if r.source.name == buffer)


def pack_inputs(sch: Schedule, block, inputs: list, lanes: int, num_cores: int,
                intermediates: frozenset, layout_free: frozenset) -> None:
    """Give each ``(buffer, dim)`` read of ``block`` the blocked layout: an
    intermediate (the padded input) is transformed in place, a parameter is copied
    (a copy that can be made ahead of time when the parameter is ``layout_free``)."""
    for buffer, dim in inputs:
        shape = next(r for r in sch.get(block).reads if r.source.name == buffer).source.ty.shape
        index_map = blocked_map(shape, dim, lanes)
        if buffer in intermediates:
            sch.transform_layout(block, buffer, index_map)
            continue
        copy = sch.cache_read(block, _read_index(sch, block, buffer), "global")
        sch.transform_layout(copy, ("write", 0), index_map)
        loops = sch.get_loops(copy)
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        chunks = min(loop_extent(sch, fused), 4 * num_cores)
        outer, _ = sch.split(fused, [chunks, None])
        sch.parallel(outer)
        if buffer in layout_free:
            sch.annotate(copy, PREPACK_ANNOTATION, IntImm("int32", 1))


def pack_accumulator(sch: Schedule, block, dim: int, lanes: int) -> None:
    """Give the accumulator written by ``block`` the blocked layout along ``dim``."""
    shape = sch.get(block).writes[0].source.ty.shape
    sch.transform_layout(block, ("write", 0), blocked_map(shape, dim, lanes))
