"""Rule ``fallback``: anything the other rules do not fit (opaque or odd blocks,
reductions with several outputs, scans, ...).

It only parallelizes the outermost loop of each block whose loop nest is simple
and whose outermost iterator is spatial, where TVM agrees the loop is parallel;
otherwise (``parallel=False``, or nothing parallelizable) the function is
returned unscheduled. So ``space_for`` always has a space to offer.
"""

from __future__ import annotations

from tvm.s_tir import Schedule

from .analysis import SPATIAL, FuncInfo
from .common import try_primitive
from .space import Rule


class FallbackRule(Rule):
    name = "fallback"

    def __init__(self, func, info: FuncInfo, num_cores: int):
        self.num_cores = num_cores
        sch = Schedule(func)
        self.blocks = []  # blocks whose outermost loop can run in parallel
        for block in info.blocks:
            if not block.simple_nest or not block.axes:
                continue
            first = block.axes[0]
            if first.kind != SPATIAL or first.extent < 2:
                continue
            if try_primitive(sch.parallel, sch.get_loops(sch.get_sblock(block.name))[0]):
                self.blocks.append(block.name)
        self.knobs = {"parallel": (True, False) if self.blocks else (False,)}

    def default_values(self) -> dict:
        return {"parallel": bool(self.blocks)}

    def check(self, values: dict) -> None:
        """Both values are always legal."""

    def schedule(self, sch: Schedule, values: dict) -> None:
        if values["parallel"]:
            for name in self.blocks:
                sch.parallel(sch.get_loops(sch.get_sblock(name))[0])
