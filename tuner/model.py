"""ONNX import with validation.

``load`` checks everything a user can get wrong before any work starts, and
turns each problem into one :class:`~tuner.errors.TunerError` line: a missing
or corrupt file, a model that fails ``onnx.checker``, unsupported operators
(all of them, with their node names), and unknown or mis-given input shapes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, ShapeError, UnsupportedOperatorError, error_line

# Domains whose ops the TVM importer converts by op type alone.
_KNOWN_DOMAINS = ("", "ai.onnx", "com.microsoft")


@dataclass(frozen=True)
class InputSpec:
    """One graph input with a fully known shape."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> "InputSpec":
        return cls(data["name"], tuple(int(d) for d in data["shape"]), data["dtype"])


class Model:
    """A validated ONNX model with static input shapes; imports to Relax on demand."""

    def __init__(self, proto, inputs: tuple[InputSpec, ...], name: str):
        self.proto = proto
        self.inputs = inputs
        self.name = name
        self.output_names = tuple(o.name for o in proto.graph.output)
        self._relax = None

    @property
    def nodes(self):
        """The graph's nodes (``tuner.provenance.Node``), in order: what tasks name as their origin."""
        from .provenance import graph_nodes

        return graph_nodes(self.proto)

    def relax_module(self):
        """The model as a Relax IRModule (weights bound as constants)."""
        if self._relax is None:
            self._relax = _import_relax(self)
        return self._relax

    def __repr__(self) -> str:
        shapes = ", ".join(f"{i.name}={list(i.shape)}" for i in self.inputs)
        return f"Model({self.name!r}, inputs: {shapes})"


def load(path_or_model, shapes: dict[str, list[int]] | None = None) -> Model:
    """Read and validate an ONNX model from a path or a ``ModelProto``.

    ``shapes`` gives the shape of inputs whose dimensions are not fixed in the
    model (``{"x": [4, 32]}``). Raises a :class:`~tuner.errors.TunerError`
    subclass with a one-line message for every problem found.
    """
    proto, name = _read(path_or_model)
    _check(proto, name)
    check_operators(proto)
    inputs = resolve_input_shapes(proto, shapes or {})
    return Model(proto, inputs, name)


def _read(path_or_model):
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, path_or_model.graph.name or "model"
    path = Path(os.fspath(path_or_model))
    if not path.exists():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise ModelError(f"model path {str(path)!r} is not a file")
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError and friends; external-data errors
        raise ModelError(f"{path} is not a readable ONNX model: {error_line(err)}") from None
    if proto.ir_version == 0 or not proto.graph.node:
        raise ModelError(f"{path} is not an ONNX model (no IR version or no graph nodes)")
    return proto, path.stem


def _check(proto, name: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as err:
        raise ModelError(f"{name} fails the ONNX checker: {error_line(err)}") from None


def _supported_op_types() -> set[str]:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    return set(_get_convert_map()) | {"If", "Constant"}


def _walk_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g and attr.g.node:
                yield from _walk_nodes(attr.g)
            for sub in attr.graphs:
                yield from _walk_nodes(sub)


def check_operators(proto) -> None:
    """Raise one error listing every unsupported op type with the names of its nodes."""
    supported = _supported_op_types()
    missing: dict[tuple[str, str], list[str]] = {}
    for index, node in enumerate(_walk_nodes(proto.graph)):
        if node.domain in _KNOWN_DOMAINS and node.op_type in supported:
            continue
        node_name = node.name or f"<unnamed node #{index}>"
        missing.setdefault((node.op_type, node.domain), []).append(node_name)
    if not missing:
        return
    parts = []
    for (op_type, domain), nodes in sorted(missing.items()):
        where = f" (domain {domain})" if domain not in ("", "ai.onnx") else ""
        parts.append(f"{op_type}{where}: {', '.join(nodes)}")
    raise UnsupportedOperatorError(f"unsupported operators: {'; '.join(parts)}")


def _graph_inputs(proto):
    initializers = {init.name for init in proto.graph.initializer}
    return [value for value in proto.graph.input if value.name not in initializers]


def _declared_dims(value) -> list[int | str | None]:
    """Each dimension as an int, a symbolic name, or None when absent."""
    dims = []
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _dtype(value) -> str:
    import numpy as np
    import onnx

    elem_type = value.type.tensor_type.elem_type
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def resolve_input_shapes(proto, shapes: dict[str, list[int]]) -> tuple[InputSpec, ...]:
    """Merge declared input shapes with user-given ones; every dimension must end up known."""
    inputs = _graph_inputs(proto)
    names = [value.name for value in inputs]
    for given in shapes:
        if given not in names:
            raise ShapeError(f"a shape is given for {given!r}, but the model's inputs are: {', '.join(names)}")
    specs, unknown = [], []
    for value in inputs:
        dims = _declared_dims(value)
        if value.name in shapes:
            dims = _apply_given_shape(value.name, dims, shapes[value.name])
        for axis, dim in enumerate(dims):
            if not isinstance(dim, int):
                label = f" ({dim!r})" if isinstance(dim, str) else ""
                unknown.append((value.name, axis, label, dims))
        specs.append(InputSpec(value.name, tuple(d if isinstance(d, int) else 0 for d in dims), _dtype(value)))
    if unknown:
        raise ShapeError(_unknown_shape_message(unknown))
    return tuple(specs)


def _apply_given_shape(name: str, declared: list, given) -> list[int]:
    given = [int(d) for d in given]
    if len(given) != len(declared):
        shown = ", ".join("?" if not isinstance(d, int) else str(d) for d in declared)
        raise ShapeError(f"the shape given for {name!r} has rank {len(given)}, "
                         f"but the model's input has rank {len(declared)} ({shown})")
    for axis, (old, new) in enumerate(zip(declared, given)):
        if new <= 0:
            raise ShapeError(f"the shape given for {name!r} has dimension {axis} = {new}; dimensions must be positive")
        if isinstance(old, int) and old != new:
            raise ShapeError(f"input {name!r} dimension {axis} is fixed to {old} in the model; the shape given says {new}")
    return given


def _unknown_shape_message(unknown) -> str:
    described, examples = [], {}
    for name, axis, label, dims in unknown:
        described.append(f"{name!r} dimension {axis}{label}")
        examples[name] = ",".join(str(d) if isinstance(d, int) else "1" for d in dims)
    hint = " ".join(f"--shape {name}={dims}" for name, dims in examples.items())
    return (f"input shape unknown: {'; '.join(described)}. Give it, e.g. {hint} "
            f"(Python: shapes={{{', '.join(repr(n) + ': [...]' for n in examples)}}})")


def parse_shape_arg(text: str) -> tuple[str, list[int]]:
    """Parse a ``--shape NAME=D0,D1,...`` argument."""
    name, sep, dims = text.partition("=")
    try:
        values = [int(d) for d in dims.split(",")] if dims else []
    except ValueError:
        values = []
    if not sep or not name or not values:
        raise ShapeError(f"--shape {text!r} is not of the form NAME=D0,D1,... (e.g. --shape x=4,32)")
    return name, values


def _import_relax(model: Model):
    from .provenance import import_onnx

    shape_dict = {spec.name: list(spec.shape) for spec in model.inputs}
    dtype_dict = {spec.name: spec.dtype for spec in model.inputs}
    try:
        return import_onnx(model.proto, shape_dict, dtype_dict)
    except Exception as err:  # the frontend raises many types, all with long texts
        raise ModelError(f"importing {model.name} into TVM failed: {error_line(err, last=True)}") from err
