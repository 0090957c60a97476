"""Rule ``winograd``: the input and output transforms of a Winograd convolution (``tuner.winograd``).

Both are spatial functions whose every element is a short sum of ±1 multiples of a 4x4 tile's
values, chosen by the element's place in the tile. Scheduled as the ``elementwise`` rule would, the
tile's place becomes a per-lane choice and the loads divisions by the tile width: the input
transform of a 64-channel 56x56 convolution took 4.1 ms, four times the multiply it feeds (0.2 ms
scheduled here). Here the loops follow the tiles instead:

* input (block ``winograd_input``, ``V[e, c, t]``, ``e = 4i + j`` the place in the transformed
  tile, ``t`` the tile): per channel (in parallel), the zero-padded plane is written once
  (``compute_at``), then for each row of tiles and each group of ``lanes`` tiles the 16 places
  are unrolled (each a sum of four loads, shared between places) over a vector of tiles;
* output (block ``winograd_output`` and the epilogue after it, bias, residual add, ReLU, all
  inlined into the last block ``Y[n, k, y, x]``, or ``Y[n, k, y*W + x]`` where a 1x1 convolution
  reads it as a row of pixels): per output channel (in parallel), each row pair
  and group of ``lanes`` tiles, the 2x2 places of the output tile unrolled over a vector of tiles.

The one knob, ``lanes``, is how many neighbouring tiles a vector holds: a divisor of the tiles per
row (so no vector crosses a row and needs a predicate), 16 at most.
"""

from __future__ import annotations

from tvm.s_tir import Schedule

from .analysis import FuncInfo
from .common import inline_spatial_blocks, loop_extent
from .space import NotApplicable, Rule

INPUT_BLOCK = "winograd_input"
OUTPUT_BLOCK = "winograd_output"
TILE = 4  # F(2x2, 3x3): 4x4 input tiles, 2x2 output tiles
OUT_TILE = 2
MAX_LANES = 16


class WinogradRule(Rule):
    name = "winograd"

    def __init__(self, func, info: FuncInfo, num_cores: int):
        names = [block.name for block in info.blocks]
        if not info.regular or any(not block.is_spatial for block in info.blocks):
            raise NotApplicable("needs a regular function of spatial blocks")
        if INPUT_BLOCK in names and len(names) == 2:  # the padding, then the transform
            self.kind = "input"
            pad, transform = info.blocks
            if names[1] != INPUT_BLOCK or len(pad.axes) != 4 or len(transform.axes) != 3:
                raise NotApplicable("the input transform reads an NCHW padding")
            self.tiles_per_row = (pad.axes[-1].extent - 2) // OUT_TILE
        elif OUTPUT_BLOCK in names:
            self.kind = "output"
            transform, last = info.block(OUTPUT_BLOCK), info.blocks[-1]
            self.height, width = (transform.axes[2].extent, transform.axes[3].extent) if len(transform.axes) == 4 else (0, 0)
            if not self.height or [a.extent for a in last.axes[2:]] not in ([self.height, width], [self.height * width]):
                raise NotApplicable("the output transform is NCHW, the last block NCHW or N, C, H*W of its size")
            self.tiles_per_row = width // OUT_TILE if width % OUT_TILE == 0 else 0
        else:
            raise NotApplicable("not a Winograd transform")
        self.info = info
        lanes = [d for d in range(1, MAX_LANES + 1) if self.tiles_per_row and self.tiles_per_row % d == 0]
        self.knobs = {"lanes": tuple(lanes) or (1,)}  # an odd width: its last tile is cut, no vectors

    def default_values(self) -> dict:
        return {"lanes": max(self.knobs["lanes"])}

    def check(self, values: dict) -> None:
        """Every choice of the knob divides the tiles per row."""

    def schedule(self, sch: Schedule, values: dict) -> None:
        if self.kind == "input":
            self._input(sch, values["lanes"])
        else:
            self._output(sch, values["lanes"])

    def _input(self, sch: Schedule, lanes: int) -> None:
        block = sch.get_sblock(INPUT_BLOCK)
        place, channel, tile = sch.get_loops(block)
        i, j = sch.split(place, [TILE, TILE])
        row, column = sch.split(tile, [None, self.tiles_per_row])
        outer, inner = sch.split(column, [None, lanes])
        sch.reorder(channel, row, outer, i, j, inner)
        sch.parallel(channel)
        sch.unroll(i)
        sch.unroll(j)
        if lanes > 1:
            sch.vectorize(inner)
        sch.compute_at(sch.get_sblock(self.info.blocks[0].name), channel)

    def _output(self, sch: Schedule, lanes: int) -> None:
        inline_spatial_blocks(sch, self.info, skip=set())
        block = sch.get_sblock(self.info.blocks[-1].name)
        batch, channel, *pixels = sch.get_loops(block)
        if len(pixels) == 1:  # a 1x1 convolution's flat row of pixels follows (tuner.pointwise_conv)
            pixels = sch.split(pixels[0], [self.height, None])
        row, i = sch.split(pixels[0], [None, OUT_TILE])
        column, j = sch.split(pixels[1], [None, OUT_TILE])
        outer, inner = sch.split(column, [None, lanes])
        sch.reorder(batch, channel, row, outer, i, j, inner)
        sch.parallel(sch.fuse(batch, channel))
        sch.unroll(i)
        sch.unroll(j)
        if lanes > 1 and loop_extent(sch, inner) > 1:
            sch.vectorize(inner)
