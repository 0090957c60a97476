"""Schedule steps that several rules share: inlining, unroll annotations,
parallel + vectorized loop nests."""

from __future__ import annotations

from tvm.s_tir import Schedule
from tvm.s_tir.schedule import ScheduleError

from .analysis import FuncInfo
from .tiling import largest_divisor

UNROLL_STEPS = (0, 16, 64, 512)
VECTOR_LANES = (1, 4, 8, 16, 32, 64)


def try_primitive(primitive, *args) -> bool:
    """Run a schedule primitive that may legitimately not apply (inlining).
    A failed primitive leaves the schedule unchanged."""
    try:
        primitive(*args)
    except ScheduleError:
        return False
    return True


def inline_spatial_blocks(sch: Schedule, info: FuncInfo, skip: set) -> set:
    """compute_inline every spatial block that writes only intermediates (not an
    output), last first; returns the names inlined."""
    inlined = set()
    for block in reversed(info.blocks):
        if block.name in skip or not block.is_spatial or info.is_output(block):
            continue
        if try_primitive(sch.compute_inline, sch.get_sblock(block.name)):
            inlined.add(block.name)
    return inlined


def annotate_unroll(sch: Schedule, loop, max_step: int) -> None:
    if max_step > 0:
        sch.annotate(loop, "pragma_auto_unroll_max_step", max_step)
        sch.annotate(loop, "pragma_unroll_explicit", 1)


def loop_extent(sch: Schedule, loop) -> int:
    return int(sch.get(loop).extent)


def parallel_vectorize(sch: Schedule, block, lanes: int, parallel_min: int,
                       unroll: int) -> None:
    """Fuse all loops of a spatial ``block``; split into a parallel outer loop, a
    serial middle loop and a vectorized inner loop of ``lanes`` (reduced to a divisor
    of the extent); the parallel loop gets at least ``parallel_min`` iterations
    where the extent allows."""
    loops = sch.get_loops(block)
    if not loops:
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    extent = loop_extent(sch, fused)
    lanes = largest_divisor(extent, lanes)
    rest = extent // lanes
    chunks = min(rest, max(1, parallel_min))
    chunks = next((d for d in range(chunks, rest + 1) if rest % d == 0), rest)
    outer, middle, inner = sch.split(fused, [chunks, rest // chunks, lanes])
    if chunks > 1:
        sch.parallel(outer)
    if lanes > 1:
        sch.vectorize(inner)
    annotate_unroll(sch, outer, unroll)
