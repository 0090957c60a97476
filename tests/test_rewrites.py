"""Graph rewrites before partitioning: what the tasks become, and that the outputs do not change."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import tuner
from benchmarks.models import IR_VERSION, GraphBuilder
from tuner.rewrites import multi_input_to_binary

ACTIVATIONS = {"relu", "clip", "maximum", "minimum", "sigmoid", "tanh"}


def _ops(task_name: str) -> set:
    """The ops a fused task's name lists: fused_conv2d3_add5_relu2 -> {conv2d, add, relu}."""
    return {part.rstrip("0123456789") for part in task_name.removeprefix("fused_").split("_")}


def _multi_input_model(op_type: str) -> onnx.ModelProto:
    """``op_type`` of three inputs of different shapes (multidirectional broadcasting), then Relu."""
    shapes = {"a": [1, 4, 5, 6], "b": [1, 4, 1, 1], "c": [1, 1, 5, 6]}
    node = helper.make_node(op_type, list(shapes), ["s"])
    relu = helper.make_node("Relu", ["s"], ["y"])
    graph = helper.make_graph([node, relu], "multi", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                                      for n, s in shapes.items()],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = IR_VERSION
    return model


@pytest.mark.parametrize("op_type", ["Sum", "Mean", "Max", "Min"])
def test_a_multi_input_op_becomes_binary_ops_with_the_same_outputs(op_type, backend):
    proto = _multi_input_model(op_type)
    model = tuner.load(proto)
    imported = model.relax_module()
    original = imported.script()
    rewritten = multi_input_to_binary()(imported).script()
    assert "R.stack" not in rewritten and "R.broadcast_to" not in rewritten
    assert imported.script() == original and "R.stack" in original  # the pass leaves its input alone
    rng = np.random.default_rng(0)
    feeds = {spec.name: rng.standard_normal(spec.shape).astype(np.float32) for spec in model.inputs}
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = tuner.build(model, backend).runner().run(**feeds)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6)
    assert all("stack" not in task.name for task in tuner.partition(model, backend).tasks)


def test_a_one_input_sum_is_its_input(backend):
    node = helper.make_node("Sum", ["a"], ["s"])
    graph = helper.make_graph([node, helper.make_node("Relu", ["s"], ["y"])], "one", [
        helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 6])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = IR_VERSION
    model = tuner.load(proto)
    assert [task.name for task in tuner.partition(model, backend).tasks] == ["relu"]
    a = np.random.default_rng(0).standard_normal((1, 4, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(tuner.build(model, backend).runner().run(a=a)[0], np.maximum(a, 0))


def _bn_relu(b: GraphBuilder, x: str, channels: int, name: str, relu: bool = True) -> str:
    y = b.batch_norm(x, channels, name=f"{name}.bn")
    return b.op("Relu", [y], name=f"{name}.relu") if relu else y


def resnet50_shaped(channels: int = 16, size: int = 8) -> onnx.ModelProto:
    """Bottleneck blocks as the ONNX model zoo's ResNet-50 writes them: BatchNorm after each
    bias-free conv, the residual as a ``Sum``, then Relu."""
    b = GraphBuilder(0)
    x = _bn_relu(b, b.conv("x", 3, channels, 3, bias=False, name="stem"), channels, "stem")
    for block in range(2):
        name = f"block{block}"
        h = _bn_relu(b, b.conv(x, channels, channels // 2, 1, bias=False, name=f"{name}.a"), channels // 2, f"{name}.a")
        h = _bn_relu(b, b.conv(h, channels // 2, channels // 2, 3, bias=False, name=f"{name}.b"), channels // 2,
                     f"{name}.b")
        h = _bn_relu(b, b.conv(h, channels // 2, channels, 1, bias=False, name=f"{name}.c"), channels, f"{name}.c",
                     relu=False)
        x = b.op("Relu", [b.op("Sum", [h, x], name=f"{name}.sum")], name=f"{name}.relu")
    return b.make_model("resnet50_shaped", {"x": (1, 3, size, size)}, x, (1, channels, size, size))


def densenet_shaped(channels: int = 8, growth: int = 4, size: int = 8) -> onnx.ModelProto:
    """Dense blocks as the zoo's DenseNet writes them: each layer is BatchNorm, a scale (Mul, Add),
    Relu and a conv on the concatenation of every earlier layer's output."""
    b = GraphBuilder(0)
    features = [b.conv("x", 3, channels, 3, name="stem")]
    for layer in range(3):
        name = f"layer{layer}"
        width = channels + layer * growth
        x = b.op("Concat", features, name=f"{name}.concat", axis=1) if len(features) > 1 else features[0]
        h = b.batch_norm(x, width, name=f"{name}.bn")
        h = b.op("Mul", [h, b.uniform(f"{name}.scale", (width, 1, 1), 0.5, 1.5)], name=f"{name}.mul")
        h = b.op("Add", [h, b.weight(f"{name}.shift", (width, 1, 1), 0.1)], name=f"{name}.add")
        features.append(b.conv(b.op("Relu", [h], name=f"{name}.relu"), width, growth, 3, name=f"{name}.conv"))
    y = b.op("Concat", features, name="out.concat", axis=1)
    return b.make_model("densenet_shaped", {"x": (1, 3, size, size)}, y, (1, channels + 3 * growth, size, size))


def _matches_onnxruntime(proto, backend) -> None:
    model = tuner.load(proto)
    feeds = {"x": np.random.default_rng(0).standard_normal(model.inputs[0].shape).astype(np.float32)}
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = tuner.build(model, backend).runner().run(**feeds)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-4 * float(np.abs(expected[0]).max()))


def test_resnet_residual_adds_and_relus_fuse_into_their_convolutions(backend):
    proto = resnet50_shaped()
    tasks = [task.name for task in tuner.partition(tuner.load(proto), backend).tasks]
    assert not [name for name in tasks if {"stack", "sum", "broadcast_to"} & _ops(name)]
    assert not [name for name in tasks if _ops(name) <= ACTIVATIONS | {"add"}]  # no activation on its own
    assert [name for name in tasks if {"conv2d", "relu"} <= _ops(name) and name.count("add") >= 2]  # + residual
    assert not [name for name in tasks if "batch_norm" in _ops(name)]  # folded into the convolutions
    _matches_onnxruntime(proto, backend)


def test_densenet_activations_run_with_their_producers(backend):
    proto = densenet_shaped()
    tasks = [task.name for task in tuner.partition(tuner.load(proto), backend).tasks]
    # a BatchNorm + ReLU after a concatenation that feeds the next concatenation too is a task of its
    # own (no kernel can take it as an epilogue), but no activation is ever left alone
    assert not [name for name in tasks if _ops(name) <= ACTIVATIONS]
    assert not [name for name in tasks if {"stack", "sum"} & _ops(name)]
    _matches_onnxruntime(proto, backend)


def test_a_grouped_convolution_gets_its_group_axis_and_keeps_its_epilogue(backend):
    """ShuffleNet's grouped 1x1 convolutions (not depthwise): one kernel with the group an axis of
    its own, bias and ReLU fused, outputs as ONNX Runtime's; a depthwise one is left alone."""
    b = GraphBuilder(0)
    h = b.op("Relu", [b.conv("x", 24, 36, 1, groups=4, name="grouped")], name="relu")
    y = b.conv(h, 36, 36, 3, groups=36, name="depthwise")
    proto = b.make_model("grouped", {"x": (1, 24, 7, 7)}, y, (1, 36, 7, 7))
    names = [task.name for task in tuner.partition(tuner.load(proto), backend).tasks]
    assert [name for name in names if {"group", "conv2d", "add", "relu"} <= _ops(name)]
    assert [name for name in names if "conv2d" in _ops(name) and "group" not in _ops(name)]  # the depthwise
    _matches_onnxruntime(proto, backend)


def test_a_batchnorm_after_a_convolution_with_a_bias_folds_into_it(backend):
    """ShuffleNet's stem: a Conv with a bias (imported as conv2d then add), then BatchNorm and Relu:
    one task, with no batch_norm of its own, outputs as ONNX Runtime's."""
    b = GraphBuilder(0)
    y = _bn_relu(b, b.conv("x", 3, 12, 3, stride=2, name="stem"), 12, "stem")
    proto = b.make_model("conv_bias_bn", {"x": (1, 3, 15, 15)}, y, (1, 12, 8, 8))
    names = [task.name for task in tuner.partition(tuner.load(proto), backend).tasks]
    assert len(names) == 1 and {"conv2d", "add", "relu"} <= _ops(names[0]), names
    assert "batch_norm" not in _ops(names[0])
    _matches_onnxruntime(proto, backend)


def test_a_scale_layer_after_a_convolution_folds_into_its_weights(backend):
    """Inception v2's Conv, BatchNormalization, Mul and Add of per-channel constants, Relu: one task of a
    conv, a bias and the ReLU. A Mul by a map that varies over the pixels, and an Add of a tensor that is
    not a constant, stay in the epilogue. Outputs as ONNX Runtime's."""
    b = GraphBuilder(0)
    h = b.batch_norm(b.conv("x", 8, 16, 3, name="scaled"), 16, name="scaled.bn")
    h = b.op("Mul", [h, b.uniform("scaled.scale", (1, 16, 1, 1), -1.5, 1.5)], name="scaled.mul")
    h = b.op("Relu", [b.op("Add", [h, b.weight("scaled.shift", (16, 1, 1), 0.3)], name="scaled.add")])
    y = b.op("Mul", [b.conv(h, 16, 16, 1, bias=False, name="mapped"), b.uniform("map", (1, 1, 6, 6), 0.5, 1.5)])
    y = b.op("Add", [b.conv(y, 16, 8, 3, name="fed"), b.conv("x", 8, 8, 1, name="other")])
    proto = b.make_model("scale_layer", {"x": (1, 8, 6, 6)}, y, (1, 8, 6, 6))
    names = [task.name for task in tuner.partition(tuner.load(proto), backend).tasks]
    assert [name for name in names if _ops(name) == {"conv2d", "add", "relu"} and name.count("add") == 1], names
    assert not [name for name in names if "batch_norm" in _ops(name) or ("relu" in name and "multiply" in name)]
    assert [name for name in names if {"conv2d", "multiply"} <= _ops(name)]  # the pixel map stays
    assert [name for name in names if _ops(name) == {"conv2d", "add"} and name.count("add") == 2]  # + the other conv
    _matches_onnxruntime(proto, backend)


def test_folds_at_the_output_of_a_module_as_tvm_imports_it(backend):
    """TVM's own importer binds the function's output to the last op (no alias binding after it): a
    Mul or a BatchNorm folded there stays the output, and a conv's own bias (Add, nothing to fold
    into) is left alone."""
    from tvm.relax.frontend.onnx import from_onnx

    from tuner.rewrites import rewrite
    from tuner.tasks import fuse

    cases = {"scale": lambda b, y: b.op("Mul", [y, b.uniform("scale", (8, 1, 1), 0.5, 1.5)]),
             "batchnorm": lambda b, y: b.batch_norm(y, 8), "bias": lambda b, y: y}
    for name, last in cases.items():
        b = GraphBuilder(0)
        proto = b.make_model(name, {"x": (1, 4, 6, 6)}, last(b, b.conv("x", 4, 8, 3)), (1, 8, 6, 6))
        module = from_onnx(proto)
        assert "R.output(gv)" in rewrite(module).script(), name
        tasks = [gv.name_hint for gv, _ in fuse(module, backend.tvm_target()).functions_items()
                 if gv.name_hint != "main"]
        assert len(tasks) == 1 and _ops(tasks[0]) == {"conv2d", "add"}, (name, tasks)
        _matches_onnxruntime(proto, backend)


def test_a_pointwise_convolution_runs_over_a_flat_row_of_pixels_with_its_epilogue(backend):
    """A 1x1 convolution with a residual add and ReLU (ResNet's last conv of a block): one task that
    reads the input as [N, C, H*W] and computes over the flat pixels, epilogue fused; a 3x3, a strided
    1x1 and a 1x1 from 8 channels keep the 4-D convolution, and so does every one for a GPU. Outputs as
    ONNX Runtime's."""
    b = GraphBuilder(0)
    y = b.op("Relu", [b.op("Add", [b.conv("x", 32, 32, 1, name="pointwise"), "x"], name="residual")], name="relu")
    y = b.conv(b.conv(y, 32, 8, 3, name="window"), 8, 16, 1, name="narrow")
    y = b.conv(y, 16, 16, 1, stride=2, name="strided")
    proto = b.make_model("pointwise", {"x": (1, 32, 14, 14)}, y, (1, 16, 7, 7))
    tasks = {task.name: task for task in tuner.partition(tuner.load(proto), backend).tasks}
    rows = [name for name, task in tasks.items() if 'sblock("conv2d_rows")' in task.func.script()]
    assert len(rows) == 1 and _ops(rows[0]) == {"conv2d", "add", "relu"} and rows[0].count("add") == 2, tasks
    assert [int(d) for d in tasks[rows[0]].func.params[0].ty.shape] == [1, 32, 14 * 14]
    assert sum('sblock("conv2d_nchw")' in task.func.script() for task in tasks.values()) == 3
    _matches_onnxruntime(proto, backend)
    cuda = tuner.resolve_backend('{"kind": "cuda", "arch": "sm_90"}')  # a GPU's kernels keep the 4-D conv
    assert not ['' for task in tuner.partition(tuner.load(proto), cuda).tasks if "conv2d_rows" in task.func.script()]


def _writes_of(func, name: str) -> list:
    """The iteration-domain sizes of the blocks of ``func`` that write the buffer ``name``."""
    import tvm_ffi
    from tvm.s_tir import SBlock

    sizes = []

    def visit(block):
        if any(region.source.name == name for region in block.writes):
            sizes.append(int(np.prod([int(v.dom.extent) for v in block.iter_vars])))

    tvm_ffi.structural_walk(func.body, (SBlock, visit), order="post")
    return sizes


def test_a_grouped_convolution_pads_its_groups_to_whole_vectors(backend):
    """34 output channels per group get 6 zero filters (40, five 8-lane registers); the default
    schedule writes only the true channels to the output, and the outputs match ONNX Runtime's."""
    import search_spaces
    from tuner.lower import lower

    b = GraphBuilder(0)
    y = b.op("Relu", [b.conv("x", 24, 68, 1, groups=2, name="grouped")], name="relu")
    proto = b.make_model("padded", {"x": (1, 24, 7, 7)}, y, (1, 68, 7, 7))
    (task,) = tuner.partition(tuner.load(proto), backend).tasks
    assert [int(d) for d in task.func.params[1].ty.shape] == [2, 40, 12, 1, 1]
    for config in search_spaces.space_for(task.func, backend.tvm_target()).default_configs():
        scheduled = lower(task.func, config, backend.tvm_target()).func
        # one block writes the output, with no point for a padded channel
        assert _writes_of(scheduled, scheduled.params[-1].name) == [68 * 7 * 7], config
    _matches_onnxruntime(proto, backend)


@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 1, 2, 0]])
def test_an_average_pool_divides_by_a_constant_map_of_its_counts(backend, pads):
    """A padded AveragePool that does not count the padding: one task that reads a constant
    1/count map (no per-element count), outputs as ONNX Runtime's at the edges too."""
    b = GraphBuilder(0)
    y = b.op("AveragePool", ["x"], name="pool", kernel_shape=[3, 3], strides=[1, 2], pads=pads)
    width = (9 + pads[1] + pads[3] - 3) // 2 + 1
    proto = b.make_model("avg_pool", {"x": (1, 5, 7, 9)}, y, (1, 5, 7 + pads[0] + pads[2] - 2, width))
    (task,) = tuner.partition(tuner.load(proto), backend).tasks
    assert task.func.attrs["layout_free_buffers"]  # the map, a constant
    _matches_onnxruntime(proto, backend)
