"""Rule ``tiled_reduction``: multi-level tiling of a reduction with data reuse
(matmul, dense, batch matmul, conv2d incl. strided/grouped/depthwise, pooling).

Structure applied (MetaSchedule's SSRSRS family, on one anchor block):

* injective producers (padding, transposes) and the side blocks of the epilogue
  are ``compute_inline``d;
* the anchor accumulates into a local buffer (``cache_write`` before tiling); the
  epilogue (bias, folded batch norm, ReLU/Clip, residual add) is
  ``reverse_compute_inline``d into its write-back block, which is attached to a
  tile loop with ``reverse_compute_at``;
* every spatial loop is split in 4 levels S0..S3, every reduction loop in 2
  levels R0, R1; the order is S0 S1 R0 S2 R1 S3 ("SSRSRS") or S0 R0 S1 S2 R1 S3
  ("SRSSRS"); the ``vector_axis`` goes innermost and its S3 loop is vectorized, the
  other S3 loops form the register block;
* the outer S0 (or S0+S1) loops are fused and parallel, an unroll pragma is put
  on the outermost loop, and the reduction is decomposed last.

Optional knobs: ``pad`` (convs with a padding block) inlines the padding into the
reduction or computes the padded input per parallel tile (``compute_at``);
``pack`` (data layout, see ``layout.py``) copies inputs that the vector axis
indexes in a non-last dimension into a blocked layout (conv weights
``W[ff//L, rc, ry, rx, L]``), and weights that it indexes in their last one into
panels (matmul ``W[j//L, k, L]``), and gives the accumulator the same blocking.
Cross-knob constraints (``check``) bound the register block and the accumulator
and reject orders whose write-back level does not exist.
"""

from __future__ import annotations

import math

from tvm.s_tir import Schedule
from tvm.s_tir.schedule.analysis import has_block

from .analysis import REDUCE, SPATIAL, Axis, FuncInfo, block_reads, has_data_reuse
from .common import UNROLL_STEPS, annotate_unroll, inline_spatial_blocks, try_primitive
from .config import InvalidConfigError
from .elementwise import default_tile, parallel_vectorize
from .layout import pack_accumulator, pack_inputs, packable_inputs
from .space import NotApplicable, Rule
from .tiled_defaults import default_values, tied_values
from .tiling import AVX512, MAX_LANES, VectorUnit, perfect_tilings

SPATIAL_LEVELS, REDUCE_LEVELS = 4, 2
ORDERS = ("SSRSRS", "SRSSRS")
MAX_REGISTER_TILE = 1024  # elements of the S3 register block
MAX_UNROLLED_ROWS = 64  # product of the non-vector S3 tiles
MAX_ACCUMULATOR = 1 << 16  # elements of the local accumulation buffer (256 KiB: L2-sized)


def find_anchor(info: FuncInfo):
    """The single reduction block with data reuse; NotApplicable otherwise."""
    if not info.regular:
        raise NotApplicable("irregular function")
    reductions = [b for b in info.blocks if b.is_reduction]
    if len(reductions) != 1 or not has_data_reuse(reductions[0]):
        raise NotApplicable("needs exactly one reduction block with data reuse")
    anchor = reductions[0]
    if any(a.kind not in (SPATIAL, REDUCE) for a in anchor.axes) or len(anchor.writes) != 1:
        raise NotApplicable("anchor has opaque iterators or several outputs")
    if not any(a.kind == SPATIAL and a.extent > 1 for a in anchor.axes):
        raise NotApplicable("anchor has no spatial loop to tile")
    if any(not b.is_spatial for b in info.blocks if b is not anchor):
        raise NotApplicable("other blocks must be spatial")
    return anchor


class TiledReductionRule(Rule):
    name = "tiled_reduction"

    def __init__(self, func, info: FuncInfo, num_cores: int, unit: VectorUnit = AVX512):
        self.info = info
        self.anchor = find_anchor(info)
        self.num_cores = max(1, num_cores)
        self.unit = unit  # sizes the default register blocks
        self.spatial = [a for a in self.anchor.axes if a.kind == SPATIAL]
        self.reduce = [a for a in self.anchor.axes if a.kind == REDUCE]
        self.pad_block = self._padding_producer()
        units = {a.name for a in self.anchor.axes if a.extent == 1}
        self.packable, self.reads = {}, {}  # per pad mode: packable inputs, anchor reads
        for mode in self._pad_modes():
            sch = self._inlined(func, mode)
            self.packable[mode] = packable_inputs(
                sch, self.anchor.name, [a.name for a in self.spatial], units, info.layout_free)
            self.reads[mode] = block_reads(sch.get(sch.get_sblock(self.anchor.name)))
        self.knobs = self._make_knobs()

    def _padding_producer(self) -> str | None:
        """A conditional (padding) spatial block that writes an intermediate input of the anchor."""
        reads = {r.buffer for r in self.anchor.reads}
        for block in self.info.blocks:
            if block.is_spatial and block.conditional and set(block.writes) & reads \
                    and not self.info.is_output(block):
                return block.name
        return None

    def accumulator_dim(self, vector: str | None) -> int | None:
        """The output dimension indexed by the vector axis alone, when it is not the last."""
        dims = self.anchor.write_dims
        for dim, used in enumerate(dims[:-1]):
            if used == {vector}:
                return dim
        return None

    def _pad_modes(self) -> tuple:
        return ("inline", "compute_at") if self.pad_block else ("inline",)

    def _inlined(self, func, pad_mode: str) -> Schedule:
        """A scratch schedule with the producers inlined (the padding kept or not)."""
        sch = Schedule(func)
        keep = {self.anchor.name} | ({self.pad_block} if pad_mode == "compute_at" else set())
        inline_spatial_blocks(sch, self.info, skip=keep)
        return sch

    # ----- knobs ----------------------------------------------------------------------
    def _make_knobs(self) -> dict:
        knobs = {}
        for axis in self.anchor.axes:
            if axis.extent > 1:
                levels = SPATIAL_LEVELS if axis.kind == SPATIAL else REDUCE_LEVELS
                limit = MAX_LANES if axis.kind == SPATIAL else 0
                knobs["tile_" + axis.name] = perfect_tilings(axis.extent, levels, limit)
        vector_axes = tuple(a.name for a in self.spatial if a.extent > 1)
        if vector_axes:
            knobs["vector_axis"] = vector_axes
        knobs["order"] = ORDERS
        knobs["parallel"] = (1, 2)
        knobs["write_back"] = (0, 1)
        knobs["unroll"] = UNROLL_STEPS
        if self.pad_block:
            knobs["pad"] = self._pad_modes()
        if any(self.pack_effect(name, mode) for name in vector_axes for mode in self._pad_modes()):
            knobs["pack"] = (False, True)
        return knobs

    def pack_effect(self, vector: str | None, pad_mode: str) -> bool:
        """Whether packing changes anything when ``vector`` is the vector axis."""
        if vector is None:
            return False
        return bool(self.packable[pad_mode].get(vector)) or self.accumulator_dim(vector) is not None

    def tile(self, values: dict, axis: Axis) -> tuple[int, ...]:
        levels = SPATIAL_LEVELS if axis.kind == SPATIAL else REDUCE_LEVELS
        return values.get("tile_" + axis.name, (1,) * levels)

    def check(self, values: dict) -> None:
        if values["order"] == "SRSSRS" and (values["write_back"] != 0 or values["parallel"] != 1):
            raise InvalidConfigError(
                "knob 'order' value 'SRSSRS' puts the reduction between S0 and S1: it needs "
                f"write_back=0 and parallel=1, got write_back={values['write_back']} and "
                f"parallel={values['parallel']}")
        if values["parallel"] == 2 and values["write_back"] != 1:
            raise InvalidConfigError(
                "knob 'parallel' value 2 fuses S0 and S1 loops: it needs write_back=1, "
                f"got write_back={values['write_back']}")
        vector = values.get("vector_axis")
        inner = {a.name: self.tile(values, a)[-1] for a in self.spatial}
        rows = math.prod(t for name, t in inner.items() if name != vector)
        if rows > MAX_UNROLLED_ROWS or rows * inner.get(vector, 1) > MAX_REGISTER_TILE:
            raise InvalidConfigError(
                f"S3 register tile {inner} (vector_axis={vector!r}) is too large: at most "
                f"{MAX_UNROLLED_ROWS} rows besides the vector axis and {MAX_REGISTER_TILE} elements")
        pad_mode = values.get("pad", "inline")
        if values.get("pack") and (inner.get(vector, 1) == 1 or not self.pack_effect(vector, pad_mode)):
            raise InvalidConfigError(
                f"knob 'pack' value True has no effect with vector_axis={vector!r} and "
                f"vector lanes {inner.get(vector, 1)}; use pack=False")
        level = values["write_back"] + 1
        acc = math.prod(math.prod(self.tile(values, a)[level:]) for a in self.spatial)
        if acc > MAX_ACCUMULATOR:
            raise InvalidConfigError(
                f"knob 'write_back' value {values['write_back']}: the accumulator tile has "
                f"{acc} elements, at most {MAX_ACCUMULATOR} are allowed")

    def default_values(self) -> dict:
        return default_values(self)

    def tied_values(self) -> list:
        return tied_values(self)

    def family(self, values: dict) -> tuple:
        """The register block: the vector axis and each spatial axis's innermost tile."""
        return (values.get("vector_axis"),) + tuple(self.tile(values, axis)[-1] for axis in self.spatial)

    # ----- schedule -------------------------------------------------------------------
    def schedule(self, sch: Schedule, values: dict) -> None:
        anchor = sch.get_sblock(self.anchor.name)
        keep = {self.anchor.name}
        if values.get("pad") == "compute_at":
            keep.add(self.pad_block)
        inline_spatial_blocks(sch, self.info, skip=keep)
        vector = values.get("vector_axis")
        lanes = self._lanes(values)
        if values.get("pack"):
            pack_inputs(sch, anchor, self.packable[values.get("pad", "inline")][vector], lanes,
                        self.num_cores, self.info.intermediates, self.info.layout_free)
        write_back = sch.cache_write(anchor, 0, "global")
        if values.get("pack") and self.accumulator_dim(vector) is not None:
            pack_accumulator(sch, anchor, self.accumulator_dim(vector), lanes)
        self._fuse_epilogue(sch)
        levels = self._split(sch, anchor, values)
        order = self._order(levels, values)
        sch.reorder(*order)
        attach = levels["S"][values["write_back"]]
        sch.reverse_compute_at(write_back, attach[-1])
        outer = self._parallelize(sch, levels, values)
        if values.get("pad") == "compute_at":
            sch.compute_at(sch.get_sblock(self.pad_block), outer)
        self._vectorize(sch, levels, write_back, values)
        annotate_unroll(sch, outer, values["unroll"])
        sch.decompose_reduction(anchor, (levels["runit"] + levels["R"][0])[0])

    def _lanes(self, values: dict) -> int:
        vector = values.get("vector_axis")
        axis = next((a for a in self.spatial if a.name == vector), None)
        return self.tile(values, axis)[-1] if axis is not None else 1

    def _fuse_epilogue(self, sch: Schedule) -> None:
        """reverse_compute_inline the epilogue into the write-back block; a block
        that does not fit (a layout change, say) stays a parallel loop nest of its own."""
        for block in self.info.blocks[self.info.blocks.index(self.anchor) + 1:]:
            if not has_block(sch, block.name):
                continue
            if not self._covers_anchor(sch, block.name) or \
                    not try_primitive(sch.reverse_compute_inline, sch.get_sblock(block.name)):
                extent = math.prod(a.extent for a in block.axes)
                last = block.axes[-1].extent if block.axes else 1
                parallel_vectorize(sch, sch.get_sblock(block.name),
                                   default_tile(extent, last, self.num_cores), 0)

    def _covers_anchor(self, sch: Schedule, name: str) -> bool:
        """Whether block ``name``, where it reads the anchor's output, has one point per output element.
        One that reads a part of it (the true channels of a grouped conv padded with zero filters)
        must not be inlined: TVM would inline it all the same, and the write-back would then write
        the padded channels out of bounds."""
        block = sch.get(sch.get_sblock(name))
        if not set(self.anchor.writes) & {r.source.name for r in block.reads}:
            return True
        return math.prod(int(v.dom.extent) for v in block.iter_vars) == math.prod(a.extent for a in self.spatial)

    def _split(self, sch: Schedule, anchor, values: dict) -> dict:
        """Loops by level: S[0..3], R[0..1] (lists in axis order), unit loops apart."""
        loops = sch.get_loops(anchor)
        levels = {"S": [[] for _ in range(SPATIAL_LEVELS)], "R": [[] for _ in range(REDUCE_LEVELS)],
                  "unit": [], "runit": [], "names": {}}
        for loop, axis in zip(loops, self.anchor.axes):
            if axis.extent == 1:
                levels["unit" if axis.kind == SPATIAL else "runit"].append(loop)
                continue
            parts = sch.split(loop, list(self.tile(values, axis)))
            group = levels["S"] if axis.kind == SPATIAL else levels["R"]
            for level, part in enumerate(parts):
                group[level].append(part)
                levels["names"][part] = axis.name
        return levels

    def _order(self, levels: dict, values: dict) -> list:
        s, r = levels["S"], levels["R"]
        vector = values.get("vector_axis")
        s3 = sorted(s[3], key=lambda loop: levels["names"][loop] == vector)
        head = levels["unit"] + s[0]
        if values["order"] == "SSRSRS":
            return head + s[1] + levels["runit"] + r[0] + s[2] + r[1] + s3
        return head + levels["runit"] + r[0] + s[1] + s[2] + r[1] + s3

    def _parallelize(self, sch: Schedule, levels: dict, values: dict):
        loops = levels["unit"] + levels["S"][0]
        if values["parallel"] == 2:
            loops = loops + levels["S"][1]
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        if int(sch.get(fused).extent) > 1:
            sch.parallel(fused)
        return fused

    def _vectorize(self, sch: Schedule, levels: dict, write_back, values: dict) -> None:
        vector = values.get("vector_axis")
        inner = [lp for lp in levels["S"][3] if levels["names"][lp] == vector]
        if not inner or int(sch.get(inner[0]).extent) == 1:
            return
        sch.vectorize(inner[0])
        if not self.anchor.write_dims or self.anchor.write_dims[-1] != {vector}:
            return
        wb_loops = sch.get_loops(write_back)
        lanes = int(sch.get(inner[0]).extent)
        last = wb_loops[-1]
        if int(sch.get(last).extent) % lanes == 0 and len(wb_loops) > 1:
            _, vec = sch.split(last, [None, lanes])
            sch.vectorize(vec)


