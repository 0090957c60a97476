"""Every bad input is rejected with one clear line before any work starts."""

import onnx
import pytest
from onnx import TensorProto, helper

import tuner
from benchmarks.models import gemm_model, small_cnn_model
from conftest import run_cli


def _model_with(nodes, inputs, outputs, initializers=(), opset_imports=None):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=opset_imports or [helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _dynamic_model(dims=("batch", 32)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    return _model_with([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y])


def _save(tmp_path, model, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_file(tmp_path):
    with pytest.raises(tuner.ModelError, match="does not exist"):
        tuner.load(tmp_path / "nope.onnx")
    _assert_one_line_error(run_cli("tasks", tmp_path / "nope.onnx"), "nope.onnx", "does not exist")


def test_not_onnx(tmp_path, cli):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\xff this is not a protobuf \xfe\x01" * 10)
    with pytest.raises(tuner.ModelError, match="junk.onnx"):
        tuner.load(path)
    _assert_one_line_error(cli("tasks", path), "junk.onnx")


def test_truncated_file(tmp_path, cli):
    data = small_cnn_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 3])
    _assert_one_line_error(cli("tasks", path), "cut.onnx")


def test_fails_checker(tmp_path, cli):
    # Relu's input refers to a tensor nothing produces.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    model = _model_with([helper.make_node("Relu", ["missing"], ["y"], name="r")], [x], [y])
    path = _save(tmp_path, model)
    with pytest.raises(tuner.ModelError, match="ONNX checker"):
        tuner.load(path)
    _assert_one_line_error(cli("tasks", path), "fails the ONNX checker")


def test_unsupported_operators_listed_with_node_names(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [
        helper.make_node("Celu", ["x"], ["a"], name="celu_1"),
        helper.make_node("FancyOp", ["a"], ["b"], name="my_fancy_node", domain="com.example.nowhere"),
        helper.make_node("Celu", ["b"], ["c"], name="celu_2"),
        helper.make_node("Relu", ["c"], ["y"], name="fine"),
    ]
    model = _model_with(nodes, [x], [y], opset_imports=[helper.make_opsetid("", 17),
                                                         helper.make_opsetid("com.example.nowhere", 1)])
    path = _save(tmp_path, model)
    with pytest.raises(tuner.UnsupportedOperatorError) as info:
        tuner.load(path)
    message = str(info.value)
    assert "FancyOp (domain com.example.nowhere): my_fancy_node" in message
    assert "Celu: celu_1, celu_2" in message
    assert "Relu" not in message
    _assert_one_line_error(run_cli("tasks", path), "FancyOp (domain com.example.nowhere): my_fancy_node",
                           "Celu: celu_1, celu_2")


def test_dynamic_dimension_without_shape(tmp_path, cli):
    path = _save(tmp_path, _dynamic_model())
    with pytest.raises(tuner.ShapeError) as info:
        tuner.load(path)
    assert "'x' dimension 0 ('batch')" in str(info.value)
    assert "--shape x=1,32" in str(info.value)
    _assert_one_line_error(cli("tasks", path), "'x' dimension 0", "--shape x=")


def test_dynamic_dimension_with_shape(tmp_path, cli):
    model = tuner.load(_dynamic_model(), shapes={"x": [4, 32]})
    assert model.inputs[0].shape == (4, 32)
    result = cli("tasks", _save(tmp_path, _dynamic_model()), "--shape", "x=4,32", "--json")
    assert result.returncode == 0, result.stderr


def test_shape_for_unknown_input(tmp_path, cli):
    with pytest.raises(tuner.ShapeError, match="'z'.*inputs are: x"):
        tuner.load(_dynamic_model(), shapes={"z": [4, 32]})
    _assert_one_line_error(cli("tasks", _save(tmp_path, _dynamic_model()), "--shape", "z=4,32"), "'z'")


def test_shape_with_wrong_rank(tmp_path, cli):
    with pytest.raises(tuner.ShapeError, match="rank 3.*rank 2"):
        tuner.load(_dynamic_model(), shapes={"x": [4, 32, 1]})
    _assert_one_line_error(cli("tasks", _save(tmp_path, _dynamic_model()), "--shape", "x=4,32,1"), "rank 3")


def test_shape_contradicting_fixed_dimension():
    with pytest.raises(tuner.ShapeError, match="fixed to 32"):
        tuner.load(_dynamic_model(), shapes={"x": [4, 31]})


def test_malformed_shape_argument(tmp_path, cli):
    _assert_one_line_error(cli("tasks", _save(tmp_path, _dynamic_model()), "--shape", "x=4,a"), "NAME=D0")


def test_valid_model_loads_with_static_inputs():
    model = tuner.load(gemm_model(batch=3, in_features=5, out_features=7))
    assert model.inputs == (tuner.InputSpec("x", (3, 5), "float32"),)
    assert model.output_names == ("y",)


def test_bad_target_is_one_line(tmp_path, cli):
    path = _save(tmp_path, gemm_model(batch=2, in_features=4, out_features=3))
    _assert_one_line_error(cli("tasks", path, "--target", "llvm -mcpu=znver4"), "JSON dict")
    _assert_one_line_error(cli("tasks", path, "--target", '{"kind": "llvm", "mcpu": "nocpu"}'), "nocpu")
