"""Rule ``elementwise``: functions made only of spatial blocks (elementwise,
broadcast, reshape, transpose, concat, pad, folded batch norm, ...).

Every intermediate block is ``compute_inline``d into the output block(s). The
loops of each remaining block are fused into one, split into
``tile = [parallel, serial, vector]`` (a perfect tiling of the fused extent of
the largest output block, whose vector part divides the last dimension so that
a vector never crosses a row; other blocks use the nearest divisors); the outer
part runs in parallel, the inner part is vectorized, the outer loop carries the
unroll pragma.
"""

from __future__ import annotations

import math

from tvm.s_tir import Schedule
from tvm.s_tir.schedule.analysis import has_block

from .analysis import FuncInfo
from .common import UNROLL_STEPS, annotate_unroll, inline_spatial_blocks, loop_extent
from .space import NotApplicable, Rule
from .tiling import (MAX_LANES, largest_divisor, perfect_tilings, smallest_divisor_at_least,
                     vector_lanes)

MIN_ELEMENTS_PER_TASK = 4096  # below this a parallel task costs more than it saves
CHUNKS_PER_CORE = 4


def split_for(extent: int, last: int, tile: tuple[int, int, int]) -> tuple[int, int, int]:
    """``tile`` adapted to a block of ``extent`` elements whose last dimension has
    ``last``: the lanes divide ``last`` (so a vector never crosses a row and its
    indices stay affine), the chunks divide the rest."""
    lanes = largest_divisor(last, tile[2])
    rest = extent // lanes
    chunks = largest_divisor(rest, tile[0])
    return chunks, rest // chunks, lanes


def default_tile(extent: int, last: int, num_cores: int) -> tuple[int, int, int]:
    lanes = vector_lanes(last)
    rest = extent // lanes
    tasks = min(CHUNKS_PER_CORE * num_cores, max(1, extent // MIN_ELEMENTS_PER_TASK))
    chunks = smallest_divisor_at_least(rest, tasks) if tasks > 1 else 1
    if chunks > 4 * tasks:  # an awkward extent: take the largest divisor below instead
        chunks = largest_divisor(rest, tasks)
    return chunks, rest // chunks, lanes


def parallel_vectorize(sch: Schedule, block, tile: tuple[int, int, int], unroll: int) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    last = loop_extent(sch, loops[-1])
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    chunks, serial, lanes = split_for(loop_extent(sch, fused), last, tile)
    outer, _, inner = sch.split(fused, [chunks, serial, lanes])
    if chunks > 1:
        sch.parallel(outer)
    if lanes > 1:
        sch.vectorize(inner)
    annotate_unroll(sch, outer, unroll)


class ElementwiseRule(Rule):
    name = "elementwise"

    def __init__(self, func, info: FuncInfo, num_cores: int):
        if not info.regular or not info.blocks or any(not b.is_spatial for b in info.blocks):
            raise NotApplicable("needs a regular function of spatial blocks only")
        self.info = info
        self.num_cores = max(1, num_cores)
        outputs = [b for b in info.blocks if info.is_output(b)]
        main = max(outputs or info.blocks, key=lambda b: math.prod(a.extent for a in b.axes))
        self.extent = math.prod(a.extent for a in main.axes)
        self.last = main.axes[-1].extent if main.axes else 1
        tiles = perfect_tilings(self.extent, 3, MAX_LANES)
        self.knobs = {"tile": tuple(t for t in tiles if self.last % t[2] == 0), "unroll": UNROLL_STEPS}

    def default_values(self) -> dict:
        return {"tile": default_tile(self.extent, self.last, self.num_cores), "unroll": 0}

    def check(self, values: dict) -> None:
        """Every tiling in the knob is legal."""

    def schedule(self, sch: Schedule, values: dict) -> None:
        inline_spatial_blocks(sch, self.info, skip=set())
        for block in self.info.blocks:
            if has_block(sch, block.name):
                parallel_vectorize(sch, sch.get_sblock(block.name), values["tile"], values["unroll"])
