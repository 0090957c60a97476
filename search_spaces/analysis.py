"""Structure of a fused TIR PrimFunc: its blocks, their iterators and accesses.

The analysis reads the function once, before any scheduling, so that a rule can
decide whether it fits and what its knobs are. It only understands the "normal
form" that Relax's legalization and FuseTIR produce: a root block whose body is
a sequence of loop nests, each holding one block whose iterators are bound 1:1,
in order, to the surrounding loops. Anything else is reported as irregular.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir.stmt import SBlock, SBlockRealize

SPATIAL, REDUCE, OTHER = "S", "R", "O"
_KINDS = {int(tirx.IterVar.DataPar): SPATIAL, int(tirx.IterVar.CommReduce): REDUCE}


@dataclass(frozen=True)
class Axis:
    """One block iterator: its name without the ``v_`` prefix, kind and extent."""

    name: str
    kind: str
    extent: int
    var: tirx.Var


@dataclass(frozen=True)
class Access:
    """One buffer read: the buffer name and, per dimension, the iterator names used."""

    buffer: str
    dims: tuple[frozenset, ...]
    strided: frozenset = frozenset()  # iterators that step the last dimension by more than one element


@dataclass(frozen=True)
class BlockInfo:
    name: str
    axes: tuple[Axis, ...]
    reads: tuple[Access, ...]
    writes: tuple[str, ...]
    write_dims: tuple[frozenset, ...]  # iterators used by each index of the first write
    has_init: bool
    simple_nest: bool  # loops == iterators, bound 1:1 in order, no predicate
    conditional: bool  # the body selects (if_then_else / Select), as padding does

    @property
    def is_reduction(self) -> bool:
        return self.has_init or any(a.kind == REDUCE for a in self.axes)

    @property
    def is_spatial(self) -> bool:
        return not self.has_init and all(a.kind == SPATIAL for a in self.axes)

    def axes_of(self, kind: str) -> tuple[Axis, ...]:
        return tuple(a for a in self.axes if a.kind == kind)


@dataclass(frozen=True)
class FuncInfo:
    blocks: tuple[BlockInfo, ...]  # in program order
    intermediates: frozenset  # buffers allocated in the root block
    regular: bool  # every block sits in its own simple loop nest under the root
    layout_free: frozenset = frozenset()  # parameters whose layout the caller lets us choose (weights)

    def block(self, name: str) -> BlockInfo:
        return next(b for b in self.blocks if b.name == name)

    def consumers(self, name: str) -> list[BlockInfo]:
        """Blocks that read a buffer the named block writes."""
        written = set(self.block(name).writes)
        return [b for b in self.blocks if b.name != name
                and any(r.buffer in written for r in b.reads)]

    def is_output(self, block: BlockInfo) -> bool:
        return any(w not in self.intermediates for w in block.writes)


def _used_names(expr, names_by_var: dict) -> frozenset:
    used = set()

    def visit(node):
        if node in names_by_var:
            used.add(names_by_var[node])

    tvm_ffi.structural_walk(expr, (tirx.Var, visit), order="post")
    return frozenset(used)


def block_axes(block: SBlock) -> tuple[Axis, ...]:
    return tuple(
        Axis(iv.var.name[2:] if iv.var.name.startswith("v_") else iv.var.name,
             _KINDS.get(int(iv.iter_type), OTHER), int(iv.dom.extent), iv.var)
        for iv in block.iter_vars)


def block_reads(block: SBlock) -> tuple[Access, ...]:
    """The buffers a block reads (except those it also writes), with the iterator
    names each dimension's index uses."""
    names_by_var = {a.var: a.name for a in block_axes(block)}
    written = {w.source.name for w in block.writes}
    return tuple(
        Access(r.source.name, tuple(_used_names(rng.min, names_by_var) for rng in r.region),
               _strided(r.region[-1].min, names_by_var) if r.region else frozenset())
        for r in block.reads if r.source.name not in written)


def _strided(expr, names_by_var: dict) -> frozenset:
    """The iterators whose step moves ``expr`` (an index) by more than one (a stride-2 conv's columns),
    or that it is not linear in."""
    from tvm.sym.pattern import detect_linear_equation

    strided = set()
    for var, name in names_by_var.items():
        coefficients = detect_linear_equation(expr, [var])
        if not coefficients or abs(int(coefficients[0])) > 1:
            strided.add(name)
    return frozenset(strided)


def _is_conditional(stmt) -> bool:
    found = []

    def visit(node):
        if isinstance(node, tirx.Select) or (
                isinstance(node, tvm.ir.expr.Call) and str(node.op.name).endswith("if_then_else")):
            found.append(node)

    tvm_ffi.structural_walk(stmt, ((tvm.ir.expr.Call, tirx.Select), visit), order="post")
    return bool(found)


def _block_info(realize: SBlockRealize, loops: list) -> BlockInfo:
    block: SBlock = realize.block
    axes = block_axes(block)
    names_by_var = {a.var: a.name for a in axes}
    written = tuple(w.source.name for w in block.writes)
    write_dims = tuple(_used_names(rng.min, names_by_var) for rng in block.writes[0].region) \
        if block.writes else ()
    reads = block_reads(block)
    simple = (len(loops) == len(axes)
              and all(v.same_as(loop.loop_var) for v, loop in zip(realize.iter_values, loops))
              and all(int(loop.extent) == a.extent for loop, a in zip(loops, axes))
              and isinstance(realize.predicate, tvm.tirx.IntImm) and int(realize.predicate) == 1)
    return BlockInfo(block.name_hint, axes, reads, written, write_dims, block.init is not None,
                     simple, _is_conditional(block.body))


def _walk(stmt, loops: list, out: list) -> bool:
    """Collect (realize, loops) pairs; False if the nest holds anything but loops and blocks."""
    if isinstance(stmt, tirx.For):
        if not isinstance(stmt.extent, tvm.tirx.IntImm) or int(stmt.min) != 0:
            return False
        return _walk(stmt.body, loops + [stmt], out)
    if isinstance(stmt, tirx.SeqStmt):
        # A sequence below a loop means several blocks share loops: not normal form.
        return all(_walk(s, loops, out) for s in stmt) and (not loops or len(stmt) <= 1)
    if isinstance(stmt, SBlockRealize):
        out.append((stmt, loops))
        return not _has_nested_block(stmt.block.body)
    return False


def _has_nested_block(stmt) -> bool:
    found = []
    tvm_ffi.structural_walk(stmt, (SBlockRealize, found.append), order="post")
    return bool(found)


def layout_free_params(func: tirx.PrimFunc) -> frozenset:
    """Names of the parameters listed in the function's ``layout_free_buffers``
    attribute (TVM's mark for weights: constants whose layout may be changed once,
    ahead of time, instead of at every call)."""
    indices = func.attrs.get("layout_free_buffers") if func.attrs is not None else None
    params = list(func.params)
    return frozenset(params[int(i)].name for i in (indices or ()) if 0 <= int(i) < len(params))


def analyze(func: tirx.PrimFunc) -> FuncInfo:
    """Read the blocks of ``func`` (see the module docstring for the form expected)."""
    root = func.body.block if isinstance(func.body, SBlockRealize) else None
    if root is None:
        return FuncInfo((), frozenset(), False)
    found: list = []
    regular = _walk(root.body, [], found)
    blocks = tuple(_block_info(realize, loops) for realize, loops in found)
    regular = regular and all(b.simple_nest for b in blocks) and bool(blocks)
    intermediates = frozenset(b.name for b in root.alloc_buffers)
    return FuncInfo(blocks, intermediates, regular, layout_free_params(func))


def loop_kinds(sch, block, loops: list) -> list:
    """For each of ``loops`` (ancestors of ``block``): REDUCE if it binds a reduction
    iterator of the block, SPATIAL otherwise."""
    realize = sch.get(loops[-1]).body if loops else None
    if not isinstance(realize, SBlockRealize):
        raise ValueError(f"block {sch.get(block).name_hint} is not directly below its loops")
    reduce_vars = set()
    loop_vars = {sch.get(loop).loop_var: i for i, loop in enumerate(loops)}
    for iv, value in zip(realize.block.iter_vars, realize.iter_values):
        if _KINDS.get(int(iv.iter_type)) == REDUCE:
            reduce_vars |= _used_names(value, loop_vars)
    return [REDUCE if i in reduce_vars else SPATIAL for i in range(len(loops))]


def has_data_reuse(block: BlockInfo) -> bool:
    """True if the reduction reuses its inputs: an input misses a spatial iterator
    (matmul, conv weights) or mixes spatial and reduction iterators in one index
    (a sliding window: conv, pooling; also when the output is 1x1). Softmax, mean
    and norm reductions have neither."""
    spatial = {a.name for a in block.axes if a.kind == SPATIAL}
    wide = {a.name for a in block.axes if a.kind == SPATIAL and a.extent > 1}
    reduce = {a.name for a in block.axes if a.kind == REDUCE and a.extent > 1}
    for access in block.reads:
        used = frozenset().union(*access.dims) if access.dims else frozenset()
        if wide - used:
            return True
        if any(dim & spatial and dim & reduce for dim in access.dims):
            return True
    return False
