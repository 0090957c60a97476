"""Rule ``reduction``: reductions without data reuse (softmax, layer norm, mean,
global average pool, sum, max) and the spatial blocks around them.

The last block (spatial) defines the schedule: its leading ``row`` loops (the
spatial loops the reductions keep) are fused and split into a parallel and a
serial part, its remaining loops are fused and vectorized. The reductions (and,
with ``inline=False``, the spatial intermediates such as softmax's ``exp``) are
``compute_at`` the serial row loop, so each row is reduced and normalized while
it is in cache. A reduction's inner reduction loop can be split by
``reduce_lanes`` and ``rfactor``ed so the partial sums are vectorized.
"""

from __future__ import annotations

import math

from tvm.s_tir import Schedule
from tvm.s_tir.schedule.analysis import has_block

from .analysis import REDUCE, SPATIAL, FuncInfo, loop_kinds
from .common import UNROLL_STEPS, annotate_unroll, inline_spatial_blocks, loop_extent
from .space import NotApplicable, Rule
from .tiling import (LANES, MAX_LANES, divisors, largest_divisor, perfect_tilings,
                     smallest_divisor_at_least, vector_lanes)

MIN_ELEMENTS_PER_TASK = 4096
CHUNKS_PER_CORE = 4


def _row_count(info: FuncInfo, output) -> int:
    """How many leading loops of ``output`` are the rows every reduction keeps."""
    rows = None
    for block in info.blocks:
        if not block.is_reduction:
            continue
        kinds = "".join(a.kind for a in block.axes)
        spatial = len(kinds) - len(kinds.lstrip(SPATIAL))
        if kinds.rstrip(REDUCE) != kinds[:spatial] or len(block.writes) != 1:
            raise NotApplicable(f"block {block.name}: reduction axes must be trailing")
        rows = spatial if rows is None else min(rows, spatial)
    if rows is None:
        raise NotApplicable("no reduction block")
    reduction = next(b for b in info.blocks if b.is_reduction)
    lead = [a.extent for a in reduction.axes[:rows]]
    if len(output.axes) < rows or [a.extent for a in output.axes[:rows]] != lead:
        return 0
    return rows


class ReductionRule(Rule):
    name = "reduction"

    def __init__(self, func, info: FuncInfo, num_cores: int):
        if not info.regular or any(a.kind not in (SPATIAL, REDUCE) for b in info.blocks for a in b.axes):
            raise NotApplicable("irregular function")
        self.info, self.num_cores = info, max(1, num_cores)
        self.output = info.blocks[-1]
        if not info.is_output(self.output):
            raise NotApplicable("the last block must write the output")
        self.rows = _row_count(info, self.output)
        self.row_extent = math.prod(a.extent for a in self.output.axes[:self.rows])
        inner = self.output.axes[self.rows:]
        self.inner_extent = 1 if self.output.is_reduction else math.prod(a.extent for a in inner)
        self.last = inner[-1].extent if inner and not self.output.is_reduction else 1
        first = next(b for b in info.blocks if b.is_reduction)
        self.reduce_extent = math.prod(a.extent for a in first.axes if a.kind == REDUCE)
        intermediates = [b for b in info.blocks if b.is_spatial and b is not self.output]
        has_intermediate = bool(intermediates)
        # inlining an intermediate read by several blocks (softmax's exp) recomputes it
        self.shared_intermediate = any(len(info.consumers(b.name)) > 1 for b in intermediates)
        self.knobs = {
            "rows": perfect_tilings(self.row_extent, 2),
            "compute_at": (True, False) if self.rows else (False,),
            "inline": (True, False) if has_intermediate else (True,),
            "vector_lanes": tuple(d for d in divisors(self.last) if d <= MAX_LANES),
            "reduce_lanes": tuple(d for d in divisors(self.reduce_extent) if d <= MAX_LANES),
            "unroll": UNROLL_STEPS,
        }

    def default_values(self) -> dict:
        elements = self.row_extent * max(self.inner_extent, self.reduce_extent)
        tasks = min(CHUNKS_PER_CORE * self.num_cores, max(1, elements // MIN_ELEMENTS_PER_TASK))
        chunks = smallest_divisor_at_least(self.row_extent, tasks) if tasks > 1 else 1
        lanes = vector_lanes(self.last)
        reduce_lanes = largest_divisor(self.reduce_extent, LANES) if self.reduce_extent >= 4 * LANES else 1
        return {
            "rows": (chunks, self.row_extent // chunks),
            "compute_at": bool(self.rows),
            "inline": not (self.shared_intermediate and self.rows),
            "vector_lanes": lanes,
            "reduce_lanes": reduce_lanes,
            "unroll": 0,
        }

    def check(self, values: dict) -> None:
        """Every combination of the knobs' values is legal."""

    # ----- schedule -------------------------------------------------------------------
    def schedule(self, sch: Schedule, values: dict) -> None:
        if values["inline"]:
            inline_spatial_blocks(sch, self.info, skip={self.output.name})
        partials = self._rfactor_all(sch, values["reduce_lanes"])
        lead = self._leading_spatial(sch, partials)
        loops = sch.get_loops(sch.get_sblock(self.output.name))
        rows, inner = loops[:self.rows], loops[self.rows:]
        if inner and not self.output.is_reduction:
            self._vectorize(sch, _fused(sch, inner), values["vector_lanes"])
        attach = None
        if rows:
            parallel, attach = sch.split(_fused(sch, rows), list(values["rows"]))
            self._parallel(sch, parallel, values["unroll"])
        attach = attach if values["compute_at"] else None
        for name in reversed(list(lead)):
            block = sch.get_sblock(name)
            own = self._place(sch, block, lead[name], attach, values)
            self._schedule_inner(sch, block, own, name in partials, values["vector_lanes"])

    def _place(self, sch: Schedule, block, lead: int, attach, values: dict) -> list:
        """``compute_at`` the output's serial row loop, or give the block parallel rows
        of its own; returns the block's loops below its rows."""
        if attach is not None:
            sch.compute_at(block, attach)
            return sch.get_loops(block)[2:]
        loops = sch.get_loops(block)
        if not lead:
            return loops
        rows = _fused(sch, loops[:lead])
        chunks = largest_divisor(loop_extent(sch, rows), values["rows"][0])
        outer, _ = sch.split(rows, [chunks, None])
        self._parallel(sch, outer, values["unroll"])
        return sch.get_loops(block)[2:]

    def _leading_spatial(self, sch: Schedule, partials: dict) -> dict:
        """``{block name: number of leading spatial loops}`` of every block but the output."""
        lead = {}
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            name = sch.get(block).name_hint
            if name == self.output.name:
                continue
            origin = self.info.block(partials.get(name, name))
            lead[name] = len(origin.axes_of(SPATIAL)) if origin.is_reduction else len(origin.axes)
        return lead

    def _rfactor_all(self, sch: Schedule, lanes: int) -> dict:
        """Split each reduction's fused reduction loop by ``lanes`` and rfactor the
        inner part into a partial block (vectorizable) and a short final reduction.
        Returns ``{partial block name: reduction block name}``."""
        partials = {}
        for info in self.info.blocks:
            if not info.is_reduction or not has_block(sch, info.name):
                continue
            block = sch.get_sblock(info.name)
            reduce = [lp for lp, a in zip(sch.get_loops(block), info.axes) if a.kind == REDUCE]
            fused = _fused(sch, reduce)
            block_lanes = largest_divisor(loop_extent(sch, fused), lanes)
            if block_lanes > 1:
                _, inner = sch.split(fused, [None, block_lanes])
                partial = sch.rfactor(inner, len(info.axes) - len(reduce))
                partials[sch.get(partial).name_hint] = info.name
        return partials

    def _schedule_inner(self, sch: Schedule, block, own: list, partial: bool, lanes: int) -> None:
        """The loops of ``block`` below its rows: a partial block's lane loop goes
        innermost and is vectorized, with its init moved out of the reduction loop;
        a spatial block's loops are fused and vectorized."""
        if partial and own:
            kinds = loop_kinds(sch, block, own)
            lanes_loops = [lp for lp, k in zip(own, kinds) if k == SPATIAL]
            reduce = [lp for lp, k in zip(own, kinds) if k == REDUCE]
            sch.reorder(*reduce, *lanes_loops)
            if lanes_loops:
                sch.vectorize(_fused(sch, lanes_loops))
            if reduce:
                sch.decompose_reduction(block, reduce[0])
        elif own and sch.get(block).init is None:
            self._vectorize(sch, _fused(sch, own), lanes)

    def _parallel(self, sch: Schedule, loop, unroll: int) -> None:
        if loop_extent(sch, loop) > 1:
            sch.parallel(loop)
        annotate_unroll(sch, loop, unroll)

    @staticmethod
    def _vectorize(sch: Schedule, loop, lanes: int) -> None:
        lanes = largest_divisor(loop_extent(sch, loop), lanes)
        if lanes > 1:
            _, vec = sch.split(loop, [None, lanes])
            sch.vectorize(vec)


def _fused(sch: Schedule, loops: list):
    return sch.fuse(*loops) if len(loops) > 1 else loops[0]
