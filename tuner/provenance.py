"""Which ONNX nodes each task computes, carried from import through fusion.

The carrier is the name of each binding in the model's Relax ``main``: the importer
(``import_onnx``) names every binding ``onnx__<index of its ONNX node>_n``, the graph
rewrites keep those names (``tuner.rewrites``), and so do TVM's legalization and
constant folding. ``FuseOps`` is the one step that renames: it moves groups of bindings
into functions shared by identical groups. ``fused_nodes`` replays each fused call on
the bindings before fusion to find the group it stands for, so a fused function knows
the nodes of every one of its call sites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "onnx__"
_NAME = re.compile(rf"^{PREFIX}(\d+)_n")


@dataclass(frozen=True)
class Node:
    """An ONNX node: its position in the graph, its name (``<op type>_<index>`` when the model leaves it
    unnamed) and its op type."""

    index: int
    name: str
    op_type: str

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "op_type": self.op_type}


def graph_nodes(proto) -> tuple[Node, ...]:
    """The top-level nodes of the model's graph, in order."""
    return tuple(Node(index, node.name or f"{node.op_type}_{index}", node.op_type)
                 for index, node in enumerate(proto.graph.node))


def describe(nodes, limit: int = 3) -> str:
    """The first ``limit`` nodes as ``name (OpType)``, then how many more."""
    shown = ", ".join(f"{node.name} ({node.op_type})" for node in nodes[:limit])
    return shown + (f" +{len(nodes) - limit} more" if len(nodes) > limit else "") if nodes else "-"


def binding_name(index: int) -> str:
    # the "_n" ends the index: TVM makes repeated names unique by appending digits
    return f"{PREFIX}{index}_n"


def node_index(name: str) -> int | None:
    """The ONNX node index a binding's name carries, or None."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def import_onnx(proto, shape_dict: dict, dtype_dict: dict, opset: int | None = None):
    """TVM's ONNX importer, with every binding of ``main`` named after the ONNX node it computes."""
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend

    index_of = {node.name: index for index, node in enumerate(proto.graph.node) if node.name}
    unnamed = iter(index for index, node in enumerate(proto.graph.node) if not node.name)
    known: dict = {}  # variables already bound when a converter returns them in a tuple -> node index

    class Importer(onnx_frontend.ONNXGraphImporter):
        def _convert_operator(self, op_name, inputs, attrs, opset):
            sym = super()._convert_operator(op_name, inputs, attrs, opset)
            name = attrs.get("tvm_custom", {}).get("name")
            index = index_of.get(name) if name else next(unnamed, None)
            if index is None:
                return sym
            if isinstance(sym, (relax.Call, relax.TupleGetItem)):
                return self.bb.emit(sym, name_hint=binding_name(index))
            if isinstance(sym, relax.Tuple):
                for field in sym.fields:
                    if isinstance(field, relax.Var) and node_index(field.name) is None:
                        known.setdefault(field, index)
            return sym

    opset = opset or max([o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] or [1])
    module = Importer(shape_dict, dtype_dict).from_onnx(proto.graph, opset)
    return name_all_bindings(module, known)


def _bindings(func):
    return [binding for block in func.body.blocks for binding in block.bindings]


def _uses(value) -> list:
    from tvm import relax

    used = []
    relax.analysis.post_order_visit(value, lambda expr: used.append(expr) if isinstance(expr, relax.Var) else None)
    return used


def resolve(func, known=None) -> dict:
    """Each binding variable of ``func`` -> its ONNX node index (None where none is known). An unnamed
    binding takes the node of the tuple it reads an item of, else of its first named consumer (a
    converter's intermediate value), else of the named binding it reads."""
    from tvm import relax

    bindings = _bindings(func)
    known = known or {}
    nodes = {binding.var: known.get(binding.var, node_index(binding.var.name)) for binding in bindings}
    consumers: dict = {}
    for binding in bindings:
        for var in _uses(binding.value):
            consumers.setdefault(var, []).append(binding.var)

    def from_consumers(var, seen):
        for consumer in consumers.get(var, []):
            if consumer in seen:
                continue
            seen.add(consumer)
            found = nodes.get(consumer)
            found = found if found is not None else from_consumers(consumer, seen)
            if found is not None:
                return found
        return None

    for binding in bindings:
        if nodes[binding.var] is not None:
            continue
        value = binding.value
        if isinstance(value, relax.TupleGetItem) and nodes.get(value.tuple_value) is not None:
            nodes[binding.var] = nodes[value.tuple_value]
            continue
        found = from_consumers(binding.var, set())
        if found is None:
            found = next((nodes[var] for var in _uses(value) if nodes.get(var) is not None), None)
        nodes[binding.var] = found
    return nodes


def name_all_bindings(module, known=None):
    """``module`` with every binding of ``main`` named after its node (``resolve``)."""
    from tvm import relax

    nodes = resolve(module["main"], known)

    @relax.expr_functor.mutator
    class Rename(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            index = nodes.get(binding.var)
            if index is None or not isinstance(binding.var, relax.DataflowVar) or \
                    node_index(binding.var.name) == index:
                return super().visit_var_binding_(binding)
            renamed = self.builder_.emit(self.visit_expr(binding.value), name_hint=binding_name(index))
            self.set_var_remap(binding.var, renamed)

    module = module.clone()
    module["main"] = Rename(module).visit_expr(module["main"])
    return module


def _key(expr, mapping):
    """A hashable description of ``expr``, with the variables in ``mapping`` replaced by their keys
    (others by name: the model's inputs); constants by type only (identical groups of one model
    differ in their constants alone, and are matched in program order)."""
    from tvm import relax
    from tvm.ir.expr import Constant

    if isinstance(expr, relax.Var):
        return mapping.get(expr, ("var", expr.name))
    if isinstance(expr, Constant):
        return ("const", str(expr.ty))
    if isinstance(expr, relax.Call):
        op = expr.op.name_hint if isinstance(expr.op, relax.GlobalVar) else str(expr.op)
        return ("call", op, tuple(_key(arg, mapping) for arg in expr.args))
    if isinstance(expr, relax.Tuple):
        return ("tuple", tuple(_key(field, mapping) for field in expr.fields))
    if isinstance(expr, relax.TupleGetItem):
        return ("item", _key(expr.tuple_value, mapping), expr.index)
    if isinstance(expr, relax.GlobalVar):
        return ("global", expr.name_hint)
    return ("other", str(expr))


def fused_nodes(before, after) -> dict[str, set[int]]:
    """For each function ``main`` calls in ``after`` (``before`` through ``FuseOps``): the ONNX node
    indices of its call sites' bindings in ``before``."""
    from tvm import relax

    nodes = resolve(before["main"])
    bindings = _bindings(before["main"])
    at = {binding.var: ("at", position) for position, binding in enumerate(bindings)}
    pending: dict = {}
    for binding in bindings:
        pending.setdefault(_key(binding.value, at), []).append(binding.var)
    mapped: dict = {}  # variable of ``after`` -> the key of its binding in ``before``
    result: dict[str, set[int]] = {}

    def take(value, mapping):
        """The first binding of ``before`` not taken yet that computes what ``value`` does."""
        candidates = pending.get(_key(value, mapping))
        return candidates.pop(0) if candidates else None

    for binding in _bindings(after["main"]):
        value = binding.value
        callee = after[value.op] if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar) else None
        if isinstance(callee, relax.Function):
            inner = {param: _key(arg, mapped) for param, arg in zip(callee.params, value.args)}
            group, last = set(), None
            for inner_binding in _bindings(callee):
                found = take(inner_binding.value, inner)
                if found is not None:
                    inner[inner_binding.var] = last = at[found]
                    group.add(nodes.get(found))
            _record(result, value.op.name_hint, group)
            if last is not None:
                mapped[binding.var] = last
            continue
        found = take(value, mapped)
        if found is not None:
            mapped[binding.var] = at[found]
            if isinstance(value, relax.Call) and value.args and isinstance(value.args[0], relax.GlobalVar):
                _record(result, value.args[0].name_hint, {nodes.get(found)})
    return result


def _record(result, name, indices) -> None:
    result.setdefault(name, set()).update(index for index in indices if index is not None)
