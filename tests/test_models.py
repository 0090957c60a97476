"""Tests for the synthetic ONNX model builders in benchmarks/models.py."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from benchmarks.models import MODELS, build, random_inputs

ROOT = Path(__file__).resolve().parents[1]

# Small arguments for every registry entry, with the expected output shape.
SMALL = {
    "conv": (dict(in_channels=8, out_channels=16, size=12), (1, 16, 12, 12)),
    "depthwise": (dict(size=14), (1, 96, 14, 14)),
    "gemm": (dict(batch=2, in_features=32, out_features=16, relu=True), (2, 16)),
    "matmul": (dict(m=64, k=64, n=64), (64, 64)),
    "mlp": (dict(batch=4, sizes=(32, 64, 10)), (4, 10)),
    "small_cnn": (dict(channels=8, size=8), (1, 10)),
    "resnet18": (dict(size=32), (1, 1000)),
    "mobilenetv2": (dict(size=32, width_mult=0.35), (1, 1000)),
    "transformer": (dict(seq_len=16, d_model=32, num_heads=2, d_ff=64), (1, 16, 32)),
}


def run_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(["y"], feeds)[0]


def op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture(scope="module")
def small_models() -> dict[str, onnx.ModelProto]:
    return {name: build(name, **kwargs) for name, (kwargs, _) in SMALL.items()}


def test_every_registry_entry_is_covered():
    assert set(SMALL) == set(MODELS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_is_valid_and_runs(name, small_models):
    model = small_models[name]
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 10
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    assert [o.name for o in model.graph.output] == ["y"]
    assert all(t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
               for t in model.graph.initializer)
    feeds = random_inputs(model)
    assert all(a.dtype == np.float32 for a in feeds.values())
    y = run_model(model, feeds)
    assert y.shape == SMALL[name][1]
    assert np.isfinite(y).all()


def test_image_models_take_input_x(small_models):
    for name in ("conv", "depthwise", "small_cnn", "resnet18", "mobilenetv2"):
        assert list(random_inputs(small_models[name])) == ["x"]


def test_builders_are_deterministic_per_seed():
    a, b = build("small_cnn", seed=3), build("small_cnn", seed=3)
    c = build("small_cnn", seed=4)
    assert a.SerializeToString() == b.SerializeToString()
    assert a.SerializeToString() != c.SerializeToString()


def test_resnet18_structure(small_models):
    ops = op_types(small_models["resnet18"])
    assert ops.count("Conv") == 20  # stem + 16 in blocks + 3 downsample shortcuts
    assert ops.count("BatchNormalization") == 20
    assert ops.count("Add") == 8
    assert ops.count("MaxPool") == 1 and ops.count("Gemm") == 1


def test_resnet18_activations_stay_reasonable():
    model = build("resnet18", size=64)
    y = run_model(model, random_inputs(model))
    assert np.isfinite(y).all()
    assert 1e-3 < float(y.std()) < 1e3


def test_mobilenetv2_structure(small_models):
    model = small_models["mobilenetv2"]
    weights = initializers(model)
    depthwise = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = attributes(node).get("group", 1)
        out_channels, in_per_group = weights[node.input[1]].shape[:2]
        if group > 1:
            assert group == out_channels and in_per_group == 1
            depthwise += 1
    assert depthwise == 17  # one per inverted-residual block
    ops = op_types(model)
    assert "Clip" in ops and "BatchNormalization" in ops and "Add" in ops


def test_depthwise_registry_entry():
    model = build("depthwise")
    (node,) = [n for n in model.graph.node if n.op_type == "Conv"]
    assert attributes(node)["group"] == 96
    assert random_inputs(model)["x"].shape == (1, 96, 56, 56)


def test_transformer_structure(small_models):
    ops = set(op_types(small_models["transformer"]))
    for op in ("Softmax", "LayerNormalization", "Erf", "Transpose", "Reshape", "MatMul"):
        assert op in ops


def _layer_norm(x, scale, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _gelu(x):
    return x * 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def reference_encoder(x, w, num_heads):
    """Post-LN encoder layer in float64 numpy, weights named as in the builder."""
    def linear(h, name):
        return h @ w[f"{name}.weight"] + w[f"{name}.bias"]

    def heads(h):
        b, s, d = h.shape
        return h.reshape(b, s, num_heads, d // num_heads).transpose(0, 2, 1, 3)

    q, k, v = (heads(linear(x, n)) for n in ("q", "k", "v"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
    context = (_softmax(scores) @ v).transpose(0, 2, 1, 3).reshape(x.shape)
    h = _layer_norm(x + linear(context, "out"), w["ln1.scale"], w["ln1.bias"])
    ffn = linear(_gelu(linear(h, "ffn1")), "ffn2")
    return _layer_norm(h + ffn, w["ln2.scale"], w["ln2.bias"])


def test_transformer_matches_numpy_reference(small_models):
    model = small_models["transformer"]
    feeds = random_inputs(model, seed=1)
    weights = {k: v.astype(np.float64) for k, v in initializers(model).items()}
    expected = reference_encoder(feeds["x"].astype(np.float64), weights, num_heads=2)
    np.testing.assert_allclose(run_model(model, feeds), expected, atol=1e-4, rtol=1e-4)


def test_build_unknown_name_lists_valid_models():
    with pytest.raises(KeyError) as info:
        build("nope")
    message = str(info.value)
    assert "nope" in message
    for name in MODELS:
        assert name in message


def test_random_inputs_rejects_dynamic_dims():
    model = build("gemm", in_features=8, out_features=4)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(ValueError, match="'x'"):
        random_inputs(model)


def test_random_inputs_skips_initializers_listed_as_inputs():
    model = build("matmul", m=4, k=4, n=4)
    weight = model.graph.initializer[0]
    model.graph.input.append(helper.make_tensor_value_info(
        weight.name, weight.data_type, list(weight.dims)))
    feeds = random_inputs(model, seed=5)
    assert list(feeds) == ["x"] and feeds["x"].shape == (4, 4)


def test_cli_writes_loadable_model(tmp_path):
    out = tmp_path / "cnn.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.models", "small_cnn", "-o", str(out),
         "--set", "channels=4", "--set", "size=8", "--set", "seed=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    line = result.stdout.strip()
    assert str(out) in line and "nodes" in line and "parameters" in line
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert random_inputs(model)["x"].shape == (1, 3, 8, 8)
    assert run_model(model, random_inputs(model)).shape == (1, 10)


def test_cli_rejects_unknown_model(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.models", "nope", "-o", str(tmp_path / "x.onnx")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "resnet18" in result.stderr
