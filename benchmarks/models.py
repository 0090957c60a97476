"""Synthetic ONNX models for tests, the demo and benchmarks.

Every model is built with :mod:`onnx.helper` from seeded random weights
(nothing is downloaded).  All models use opset 17 and IR version 10 (the
newest one onnxruntime 1.31 accepts), keep their weights as float32
initializers, take image inputs named ``"x"`` and produce one output ``"y"``.

Usage from the command line::

    python -m benchmarks.models resnet18 -o resnet18.onnx --set size=112
"""

from __future__ import annotations

import argparse
import functools
import math
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 10

# MobileNetV2 inverted-residual settings: expansion t, channels c, repeats n, stride s.
MOBILENETV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class GraphBuilder:
    """Collects nodes and initializers and hands out unique tensor names."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()
        self._counters: dict[str, int] = {}

    # -- names and constants -------------------------------------------------
    def fresh(self, prefix: str) -> str:
        """Return ``prefix`` if unused, else ``prefix_N`` for the next free N."""
        name = prefix
        while name in self._used:
            count = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = count
            name = f"{prefix}_{count}"
        self._used.add(name)
        return name

    def constant(self, name: str, value) -> str:
        """Add ``value`` as an initializer (float arrays become float32)."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        unique = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(array, unique))
        return unique

    def weight(self, name: str, shape: Sequence[int], std: float) -> str:
        """Add a normal(0, std) float32 initializer."""
        return self.constant(name, self.rng.normal(0.0, std, size=tuple(shape)))

    def uniform(self, name: str, shape: Sequence[int], low: float, high: float) -> str:
        """Add a uniform(low, high) float32 initializer."""
        return self.constant(name, self.rng.uniform(low, high, size=tuple(shape)))

    # -- nodes ---------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], name: str | None = None, **attrs) -> str:
        """Append one single-output node and return its output name."""
        node_name = self.fresh(name or op_type.lower())
        output = self.fresh(f"{node_name}.out")
        node = helper.make_node(op_type, list(inputs), [output], name=node_name, **attrs)
        self.nodes.append(node)
        return output

    def conv(self, x: str, cin: int, cout: int, kernel: int, *, stride: int = 1,
             groups: int = 1, bias: bool = True, name: str = "conv") -> str:
        """Conv with He-initialised weights and "same"-style padding kernel//2."""
        fan_in = (cin // groups) * kernel * kernel
        w = self.weight(f"{name}.weight", (cout, cin // groups, kernel, kernel),
                        math.sqrt(2.0 / fan_in))
        inputs = [x, w]
        if bias:
            inputs.append(self.weight(f"{name}.bias", (cout,), 0.1))
        pad = kernel // 2
        return self.op("Conv", inputs, name=name, kernel_shape=[kernel, kernel],
                       strides=[stride, stride], pads=[pad] * 4, group=groups)

    def batch_norm(self, x: str, channels: int, name: str = "bn",
                   gamma_range: tuple[float, float] = (0.5, 1.5)) -> str:
        """BatchNormalization (inference mode) with sane random statistics."""
        scale = self.uniform(f"{name}.scale", (channels,), *gamma_range)
        beta = self.weight(f"{name}.bias", (channels,), 0.1)
        mean = self.weight(f"{name}.mean", (channels,), 0.1)
        var = self.uniform(f"{name}.var", (channels,), 0.5, 1.5)
        return self.op("BatchNormalization", [x, scale, beta, mean, var],
                       name=name, epsilon=1e-5)

    def gemm(self, x: str, fin: int, fout: int, name: str = "gemm") -> str:
        """Gemm y = x @ W^T + b with W of shape [fout, fin] (transB=1)."""
        w = self.weight(f"{name}.weight", (fout, fin), math.sqrt(2.0 / fin))
        b = self.weight(f"{name}.bias", (fout,), 0.1)
        return self.op("Gemm", [x, w, b], name=name, transB=1)

    def linear(self, x: str, fin: int, fout: int, name: str = "linear") -> str:
        """MatMul with a [fin, fout] weight followed by Add of a bias."""
        w = self.weight(f"{name}.weight", (fin, fout), 1.0 / math.sqrt(fin))
        b = self.weight(f"{name}.bias", (fout,), 0.02)
        return self.op("Add", [self.op("MatMul", [x, w], name=f"{name}.matmul"), b],
                       name=f"{name}.add")

    def layer_norm(self, x: str, dim: int, name: str = "ln") -> str:
        """LayerNormalization over the last axis with random scale and bias."""
        scale = self.uniform(f"{name}.scale", (dim,), 0.8, 1.2)
        bias = self.weight(f"{name}.bias", (dim,), 0.02)
        return self.op("LayerNormalization", [x, scale, bias], name=name,
                       axis=-1, epsilon=1e-5)

    # -- model ---------------------------------------------------------------
    def rename(self, old: str, new: str) -> None:
        """Rename tensor ``old`` to ``new`` in every node."""
        for node in self.nodes:
            for field in (node.input, node.output):
                for i, tensor in enumerate(field):
                    if tensor == old:
                        field[i] = new

    def make_model(self, graph_name: str, inputs: dict[str, Sequence[int]],
                   output: str, output_shape: Sequence[int]) -> onnx.ModelProto:
        """Wrap everything into a checked opset-17, IR-10 model with output "y"."""
        self.rename(output, "y")
        graph = helper.make_graph(
            self.nodes, graph_name,
            [_tensor_info(name, shape) for name, shape in inputs.items()],
            [_tensor_info("y", output_shape)],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="benchmarks.models")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model


def _tensor_info(name: str, shape: Sequence[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _conv_out(size: int, kernel: int, stride: int) -> int:
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


# ---------------------------------------------------------------------------
# Single-operator models
# ---------------------------------------------------------------------------
def conv_model(batch=1, in_channels=64, out_channels=64, size=56, kernel=3, stride=1,
               groups=1, bias=True, relu=True, seed=0) -> onnx.ModelProto:
    """One Conv (pads kernel//2), optional bias and Relu.

    ``groups == in_channels == out_channels`` gives a depthwise convolution.
    """
    b = GraphBuilder(seed)
    y = b.conv("x", in_channels, out_channels, kernel, stride=stride, groups=groups,
               bias=bias, name="conv")
    if relu:
        y = b.op("Relu", [y])
    out = _conv_out(size, kernel, stride)
    return b.make_model("conv", {"x": (batch, in_channels, size, size)}, y,
                        (batch, out_channels, out, out))


def gemm_model(batch=1, in_features=256, out_features=128, relu=False,
               seed=0) -> onnx.ModelProto:
    """A Gemm (transB=1, bias C), optionally followed by Relu."""
    b = GraphBuilder(seed)
    y = b.gemm("x", in_features, out_features, name="gemm")
    if relu:
        y = b.op("Relu", [y])
    return b.make_model("gemm", {"x": (batch, in_features)}, y, (batch, out_features))


def matmul_model(m=1024, k=1024, n=1024, seed=0) -> onnx.ModelProto:
    """A single MatMul x[m, k] @ W[k, n] with W an initializer."""
    b = GraphBuilder(seed)
    w = b.weight("matmul.weight", (k, n), 1.0 / math.sqrt(k))
    y = b.op("MatMul", ["x", w], name="matmul")
    return b.make_model("matmul", {"x": (m, k)}, y, (m, n))


# ---------------------------------------------------------------------------
# Small networks
# ---------------------------------------------------------------------------
def mlp_model(batch=8, sizes=(256, 512, 512, 10), seed=0) -> onnx.ModelProto:
    """Gemm + Relu layers between consecutive ``sizes``; no Relu after the last."""
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp_model needs at least two sizes, got {sizes}")
    b = GraphBuilder(seed)
    h = "x"
    n_layers = len(sizes) - 1
    for i in range(n_layers):
        h = b.gemm(h, sizes[i], sizes[i + 1], name=f"fc{i}")
        if i < n_layers - 1:
            h = b.op("Relu", [h], name=f"relu{i}")
    return b.make_model("mlp", {"x": (batch, sizes[0])}, h, (batch, sizes[-1]))


def small_cnn_model(batch=1, channels=16, size=16, seed=0) -> onnx.ModelProto:
    """Two 3x3 convs with a residual Add, global pooling and a 10-way Gemm."""
    b = GraphBuilder(seed)
    h1 = b.op("Relu", [b.conv("x", 3, channels, 3, name="conv1")])
    h2 = b.op("Relu", [b.conv(h1, channels, channels, 3, name="conv2")])
    h = b.op("Add", [h1, h2], name="residual")
    h = b.op("GlobalAveragePool", [h])
    h = b.op("Flatten", [h], axis=1)
    y = b.gemm(h, channels, 10, name="fc")
    return b.make_model("small_cnn", {"x": (batch, 3, size, size)}, y, (batch, 10))


# ---------------------------------------------------------------------------
# ResNet-18
# ---------------------------------------------------------------------------
def _conv_bn(b: GraphBuilder, x: str, cin: int, cout: int, kernel: int, stride: int,
             name: str, relu: bool = True, gamma=(0.5, 1.5)) -> str:
    h = b.conv(x, cin, cout, kernel, stride=stride, bias=False, name=f"{name}.conv")
    h = b.batch_norm(h, cout, name=f"{name}.bn", gamma_range=gamma)
    return b.op("Relu", [h], name=f"{name}.relu") if relu else h


def _basic_block(b: GraphBuilder, x: str, cin: int, cout: int, stride: int,
                 name: str) -> str:
    """ResNet BasicBlock; the damped second BN keeps the residual sum tame."""
    h = _conv_bn(b, x, cin, cout, 3, stride, f"{name}.1")
    h = _conv_bn(b, h, cout, cout, 3, 1, f"{name}.2", relu=False, gamma=(0.2, 0.5))
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = _conv_bn(b, x, cin, cout, 1, stride, f"{name}.down", relu=False)
    h = b.op("Add", [h, shortcut], name=f"{name}.add")
    return b.op("Relu", [h], name=f"{name}.relu")


def resnet18_model(batch=1, size=224, width=64, num_classes=1000,
                   seed=0) -> onnx.ModelProto:
    """ResNet-18 with explicit BatchNormalization nodes (20 Convs in total)."""
    b = GraphBuilder(seed)
    h = _conv_bn(b, "x", 3, width, 7, 2, "stem")
    h = b.op("MaxPool", [h], name="stem.pool", kernel_shape=[3, 3],
             strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for stage in range(4):
        cout = width * 2 ** stage
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            h = _basic_block(b, h, cin, cout, stride, f"layer{stage + 1}.{block}")
            cin = cout
    h = b.op("GlobalAveragePool", [h], name="avgpool")
    h = b.op("Flatten", [h], name="flatten", axis=1)
    y = b.gemm(h, cin, num_classes, name="fc")
    return b.make_model("resnet18", {"x": (batch, 3, size, size)}, y,
                        (batch, num_classes))


# ---------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------
def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels as torchvision does (never more than 10% below ``value``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn_clip(b: GraphBuilder, x: str, cin: int, cout: int, kernel: int,
                  stride: int, name: str, clip: tuple[str, str] | None,
                  groups: int = 1) -> str:
    """Conv + BN, followed by Clip(0, 6) when ``clip`` holds the min/max names."""
    h = b.conv(x, cin, cout, kernel, stride=stride, groups=groups, bias=False,
               name=f"{name}.conv")
    h = b.batch_norm(h, cout, name=f"{name}.bn")
    if clip is None:
        return h
    return b.op("Clip", [h, clip[0], clip[1]], name=f"{name}.clip")


def _inverted_residual(b: GraphBuilder, x: str, cin: int, cout: int, stride: int,
                       expand: int, name: str, clip: tuple[str, str]) -> str:
    hidden = cin * expand
    h = x
    if expand != 1:
        h = _conv_bn_clip(b, h, cin, hidden, 1, 1, f"{name}.expand", clip)
    h = _conv_bn_clip(b, h, hidden, hidden, 3, stride, f"{name}.dw", clip, groups=hidden)
    h = _conv_bn_clip(b, h, hidden, cout, 1, 1, f"{name}.project", None)
    if stride == 1 and cin == cout:
        h = b.op("Add", [h, x], name=f"{name}.add")
    return h


def mobilenetv2_model(batch=1, size=224, width_mult=1.0, num_classes=1000,
                      seed=0) -> onnx.ModelProto:
    """MobileNetV2 with BatchNormalization, Clip(0, 6) and depthwise convs."""
    b = GraphBuilder(seed)
    clip = (b.constant("clip.min", np.float32(0.0)), b.constant("clip.max", np.float32(6.0)))
    cin = _make_divisible(32 * width_mult)
    last = _make_divisible(1280 * max(1.0, width_mult))
    h = _conv_bn_clip(b, "x", 3, cin, 3, 2, "stem", clip)
    for i, (t, c, n, s) in enumerate(MOBILENETV2_SETTINGS):
        cout = _make_divisible(c * width_mult)
        for j in range(n):
            stride = s if j == 0 else 1
            h = _inverted_residual(b, h, cin, cout, stride, t, f"block{i}.{j}", clip)
            cin = cout
    h = _conv_bn_clip(b, h, cin, last, 1, 1, "head", clip)
    h = b.op("GlobalAveragePool", [h], name="avgpool")
    h = b.op("Flatten", [h], name="flatten", axis=1)
    y = b.gemm(h, last, num_classes, name="classifier")
    return b.make_model("mobilenetv2", {"x": (batch, 3, size, size)}, y,
                        (batch, num_classes))


# ---------------------------------------------------------------------------
# Transformer encoder layer
# ---------------------------------------------------------------------------
def _split_heads(b: GraphBuilder, x: str, shape: str, perm: list[int], name: str) -> str:
    """Reshape [b, s, d] -> [b, s, h, dh], then Transpose with ``perm``."""
    h = b.op("Reshape", [x, shape], name=f"{name}.reshape")
    return b.op("Transpose", [h], name=f"{name}.transpose", perm=perm)


def _self_attention(b: GraphBuilder, x: str, batch: int, seq_len: int, d_model: int,
                    num_heads: int) -> str:
    d_head = d_model // num_heads
    heads_shape = b.constant("attn.heads_shape",
                             np.array([batch, seq_len, num_heads, d_head], np.int64))
    merged_shape = b.constant("attn.merged_shape",
                              np.array([batch, seq_len, d_model], np.int64))
    q = _split_heads(b, b.linear(x, d_model, d_model, "q"), heads_shape, [0, 2, 1, 3], "q")
    k_t = _split_heads(b, b.linear(x, d_model, d_model, "k"), heads_shape, [0, 2, 3, 1], "k")
    v = _split_heads(b, b.linear(x, d_model, d_model, "v"), heads_shape, [0, 2, 1, 3], "v")
    scale = b.constant("attn.scale_factor", np.float32(1.0 / math.sqrt(d_head)))
    scores = b.op("Mul", [b.op("MatMul", [q, k_t], name="attn.qk"), scale],
                  name="attn.scale")
    probs = b.op("Softmax", [scores], name="attn.softmax", axis=-1)
    context = b.op("MatMul", [probs, v], name="attn.context")
    context = b.op("Transpose", [context], name="attn.merge.transpose", perm=[0, 2, 1, 3])
    context = b.op("Reshape", [context, merged_shape], name="attn.merge.reshape")
    return b.linear(context, d_model, d_model, "out")


def _gelu(b: GraphBuilder, x: str) -> str:
    """Exact GELU: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    sqrt2 = b.constant("gelu.sqrt2", np.float32(math.sqrt(2.0)))
    one = b.constant("gelu.one", np.float32(1.0))
    half = b.constant("gelu.half", np.float32(0.5))
    erf = b.op("Erf", [b.op("Div", [x, sqrt2], name="gelu.div")], name="gelu.erf")
    h = b.op("Mul", [x, b.op("Add", [erf, one], name="gelu.add")], name="gelu.mul")
    return b.op("Mul", [h, half], name="gelu.mul_half")


def transformer_encoder_model(batch=1, seq_len=128, d_model=256, num_heads=4,
                              d_ff=1024, seed=0) -> onnx.ModelProto:
    """One post-LN transformer encoder layer on x[batch, seq_len, d_model].

    Initializer names (used by the tests' numpy reference): ``{q,k,v,out,ffn1,ffn2}
    .weight`` ([in, out]) and ``.bias``, ``ln1/ln2.scale`` and ``.bias``.
    """
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    b = GraphBuilder(seed)
    attn = _self_attention(b, "x", batch, seq_len, d_model, num_heads)
    h = b.layer_norm(b.op("Add", ["x", attn], name="attn.residual"), d_model, "ln1")
    ffn = b.linear(h, d_model, d_ff, "ffn1")
    ffn = b.linear(_gelu(b, ffn), d_ff, d_model, "ffn2")
    y = b.layer_norm(b.op("Add", [h, ffn], name="ffn.residual"), d_model, "ln2")
    return b.make_model("transformer_encoder", {"x": (batch, seq_len, d_model)}, y,
                        (batch, seq_len, d_model))


# ---------------------------------------------------------------------------
# Registry, inputs and CLI
# ---------------------------------------------------------------------------
MODELS: dict[str, Callable[..., onnx.ModelProto]] = {
    "conv": conv_model,
    "depthwise": functools.partial(conv_model, in_channels=96, out_channels=96,
                                   groups=96, size=56, kernel=3),
    "gemm": gemm_model,
    "matmul": matmul_model,
    "mlp": mlp_model,
    "small_cnn": small_cnn_model,
    "resnet18": resnet18_model,
    "mobilenetv2": mobilenetv2_model,
    "transformer": transformer_encoder_model,
}


def build(name: str, **kwargs) -> onnx.ModelProto:
    """Build registry model ``name``; ``kwargs`` override its defaults."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def random_inputs(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 arrays for every graph input that is not a weight."""
    rng = np.random.default_rng(seed)
    weights = {init.name for init in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in weights:
            continue
        shape = _static_shape(value)
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def _static_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        raise ValueError(f"input {value.name!r} has no static shape")
    shape = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            raise ValueError(f"input {value.name!r} has a non-static dimension "
                             f"({dim.dim_param or dim.dim_value!r})")
        shape.append(dim.dim_value)
    return tuple(shape)


def count_parameters(model: onnx.ModelProto) -> int:
    """Total number of elements in the model's initializers."""
    return sum(int(np.prod(init.dims, dtype=np.int64)) for init in model.graph.initializer)


def _parse_value(text: str):
    """Parse a --set value: bool, int, float, comma-separated tuple, else str."""
    if "," in text:
        return tuple(_parse_value(part) for part in text.split(",") if part)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_settings(pairs: Sequence[str]) -> dict:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set expects key=value, got {pair!r}")
        settings[key.strip()] = _parse_value(value.strip())
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models",
                                     description="Write a synthetic ONNX model.")
    parser.add_argument("name", choices=sorted(MODELS), help="registry model name")
    parser.add_argument("-o", "--output", required=True, help="output .onnx path")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="KEY=VALUE", help="override a builder argument")
    args = parser.parse_args(argv)
    try:
        kwargs = parse_settings(args.settings)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    try:
        model = build(args.name, **kwargs)
    except TypeError as err:  # unknown or malformed --set key
        parser.error(str(err))
    onnx.save(model, args.output)
    print(f"{args.output}: {len(model.graph.node)} nodes, "
          f"{count_parameters(model)} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
