"""Schedule steps that several rules share: inlining, unroll annotations,
parallel + vectorized loop nests."""

from __future__ import annotations

from tvm.s_tir import Schedule
from tvm.s_tir.schedule import ScheduleError

from .analysis import FuncInfo

UNROLL_STEPS = (0, 16, 64, 512)


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
