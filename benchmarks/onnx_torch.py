"""Run an ONNX graph with PyTorch (cuDNN for the convolutions on a GPU), from a plain JSON form.

``graph_json(model)`` (where ``onnx`` is installed) turns a model into JSON nodes and a dict of
numpy weights; ``TorchGraph`` runs that form with ``torch.nn.functional``, so the GPU machine
needs neither ``onnx`` nor ONNX Runtime. It covers the operators of the models in
``benchmarks/models.py``.
"""

from __future__ import annotations

import numpy as np


def graph_json(model) -> tuple[dict, dict[str, np.ndarray]]:
    """``model`` (an ``onnx.ModelProto``) as {"inputs", "outputs", "nodes"} and its weights by name;
    Constant nodes become weights."""
    from onnx import helper, numpy_helper

    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            weights[node.output[0]] = numpy_helper.to_array(attrs["value"])
            continue
        attrs = {name: value.decode() if isinstance(value, bytes) else value for name, value in attrs.items()}
        nodes.append({"op": node.op_type, "inputs": list(node.input), "outputs": list(node.output),
                      "attrs": {name: list(v) if isinstance(v, (list, tuple)) else v for name, v in attrs.items()}})
    inputs = [value.name for value in model.graph.input if value.name not in weights]
    return {"inputs": inputs, "outputs": [value.name for value in model.graph.output], "nodes": nodes}, weights


class TorchGraph:
    """A graph in ``graph_json``'s form, run with PyTorch on ``device`` (weights moved there once)."""

    def __init__(self, graph: dict, weights: dict[str, np.ndarray], device):
        import torch

        self.graph = graph
        self.torch = torch
        # integer weights (Reshape's shapes) stay on the CPU: reading them is then no device sync,
        # which a CUDA graph's capture forbids
        self.values = {name: torch.from_numpy(np.array(array)).to(device if array.dtype.kind == "f" else "cpu")
                       for name, array in weights.items()}  # np.array: a writable copy

    def __call__(self, *inputs):
        values = dict(self.values)
        values.update(zip(self.graph["inputs"], inputs))
        for node in self.graph["nodes"]:
            args = [values[name] if name else None for name in node["inputs"]]
            outputs = getattr(self, "_" + node["op"].lower())(args, node["attrs"])
            values[node["outputs"][0]] = outputs
        return [values[name] for name in self.graph["outputs"]]

    def _conv(self, args, attrs):
        x, w = args[0], args[1]
        bias = args[2] if len(args) > 2 else None
        pads = attrs.get("pads", [0, 0, 0, 0])
        if pads[:2] != pads[2:]:
            raise ValueError(f"asymmetric Conv pads {pads} are not supported here")
        return self.torch.nn.functional.conv2d(x, w, bias, stride=attrs.get("strides", 1), padding=pads[:2],
                                               dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1))

    def _batchnormalization(self, args, attrs):
        x, scale, bias, mean, var = args
        return self.torch.nn.functional.batch_norm(x, mean, var, scale, bias, training=False,
                                                   eps=attrs.get("epsilon", 1e-5))

    def _maxpool(self, args, attrs):
        pads = attrs.get("pads", [0, 0, 0, 0])
        return self.torch.nn.functional.max_pool2d(args[0], attrs["kernel_shape"], attrs.get("strides", 1),
                                                   padding=pads[:2])

    def _globalaveragepool(self, args, attrs):
        return args[0].mean(dim=(2, 3), keepdim=True)

    def _flatten(self, args, attrs):
        return args[0].flatten(attrs.get("axis", 1))

    def _gemm(self, args, attrs):
        a, b = args[0], args[1]
        a = a.t() if attrs.get("transA") else a
        b = b.t() if attrs.get("transB") else b
        y = attrs.get("alpha", 1.0) * (a @ b)
        return y + attrs.get("beta", 1.0) * args[2] if len(args) > 2 and args[2] is not None else y

    def _matmul(self, args, attrs):
        return args[0] @ args[1]

    def _reshape(self, args, attrs):
        return args[0].reshape([int(d) for d in args[1].tolist()])

    def _transpose(self, args, attrs):
        return args[0].permute(attrs["perm"]).contiguous()

    def _softmax(self, args, attrs):
        return self.torch.softmax(args[0], dim=attrs.get("axis", -1))

    def _layernormalization(self, args, attrs):
        x, scale = args[0], args[1]
        bias = args[2] if len(args) > 2 else None
        axis = attrs.get("axis", -1) % x.dim()
        return self.torch.nn.functional.layer_norm(x, x.shape[axis:], scale, bias, eps=attrs.get("epsilon", 1e-5))

    def _relu(self, args, attrs):
        return self.torch.relu(args[0])

    def _clip(self, args, attrs):
        low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min")
        high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max")
        return self.torch.clamp(args[0], low, high)

    def _erf(self, args, attrs):
        return self.torch.erf(args[0])

    def _add(self, args, attrs):
        return args[0] + args[1]

    def _sub(self, args, attrs):
        return args[0] - args[1]

    def _mul(self, args, attrs):
        return args[0] * args[1]

    def _div(self, args, attrs):
        return args[0] / args[1]
