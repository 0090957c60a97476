"""search_spaces on real fused PrimFuncs (Relax "zero" pipeline on small ONNX models).

Every scheduled function is compiled together with the unscheduled one and both
run on the same random inputs; awkward shapes (primes, 7/13 channels, 17x31x23)
are used on purpose.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import onnx
import pytest
import tvm
import tvm_ffi
from onnx import TensorProto, helper, numpy_helper
from tvm.relax.frontend.onnx import from_onnx

import search_spaces as ss
from benchmarks import models as bm
from search_spaces import Config, InvalidConfigError
from search_spaces.analysis import analyze
from search_spaces.space import SearchSpace
from search_spaces.tiling import VectorUnit
from tuner.backend import resolve_backend
from tuner.prepack import split_prepack
from tuner.tasks import fuse

# this machine (the tests run what they compile); the register-block tests name their targets
TARGET = resolve_backend("host").tvm_target()
AVX512 = tvm.target.Target({"kind": "llvm", "mcpu": "znver4", "num-cores": 2})
AVX2 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3", "num-cores": 2})


# ----- models and tasks ------------------------------------------------------------------
def _value(name: str, shape: list, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _model(name: str, nodes: list, inputs: list, outputs: list, weights=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(weights))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _odd_model() -> onnx.ModelProto:
    """ArgMax (a two-output reduction), Softmax over a non-last axis, ReduceMax over
    (h, w), Exp + Concat and MaxPool on a 1x6x5x7 input."""
    nodes = [
        helper.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=1),
        helper.make_node("Softmax", ["x"], ["sm"], axis=1),
        helper.make_node("ReduceMax", ["x"], ["rmax"], axes=[2, 3], keepdims=0),
        helper.make_node("Exp", ["x"], ["ex"]),
        helper.make_node("Concat", ["sm", "ex"], ["cat"], axis=1),
        helper.make_node("MaxPool", ["x"], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    outputs = [_value("am", [1, 1, 5, 7], TensorProto.INT64), _value("rmax", [1, 6]),
               _value("cat", [1, 12, 5, 7]), _value("pool", [1, 6, 3, 4])]
    return _model("odd", nodes, [_value("x", [1, 6, 5, 7])], outputs)


def _nt_matmul_model() -> onnx.ModelProto:
    """x[5, 19] @ transpose(y[11, 19]) with both operands inputs (Relax keeps the
    transpose as a task of its own)."""
    nodes = [helper.make_node("Transpose", ["y"], ["yt"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "yt"], ["z"]),
             helper.make_node("Relu", ["z"], ["out"])]
    return _model("nt", nodes, [_value("x", [5, 19]), _value("y", [11, 19])], [_value("out", [5, 11])])


def _pool_model(size: int, stride: int) -> onnx.ModelProto:
    """A 3x3 MaxPool (padding 1) over 24 channels."""
    out = (size + 2 - 3) // stride + 1
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[stride, stride], pads=[1] * 4)
    return _model("pool", [node], [_value("x", [1, 24, size, size])], [_value("y", [1, 24, out, out])])


def _conv_affine_model() -> onnx.ModelProto:
    """Conv 8->8 3x3 on 1x8x9x9, then a scale layer (Mul/Add, which the rewrites fold into the
    conv's weights and a bias), a residual Add of the input and a Relu: all of it is one fused task."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype("float32"), "W"),
               numpy_helper.from_array(rng.uniform(0.5, 1.5, (8, 1, 1)).astype("float32"), "scale"),
               numpy_helper.from_array(rng.standard_normal((8, 1, 1)).astype("float32"), "shift")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Mul", ["c", "scale"], ["m"]), helper.make_node("Add", ["m", "shift"], ["a"]),
             helper.make_node("Add", ["a", "x"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    return _model("conv_affine", nodes, [_value("x", [1, 8, 9, 9])], [_value("y", [1, 8, 9, 9])], weights)


def _te_transposed_matmul():
    """A hand-made PrimFunc (int32 extents): relu(A @ transpose(W) + bias) with the
    transpose as an injective producer block and the epilogue in two blocks."""
    from tvm import te
    a = te.placeholder((9, 29), name="A")
    w = te.placeholder((13, 29), name="W")
    bias = te.placeholder((13,), name="bias")
    wt = te.compute((29, 13), lambda k, j: w[j, k], name="T_transpose")
    k = te.reduce_axis((0, 29), name="k")
    mm = te.compute((9, 13), lambda i, j: te.sum(a[i, k] * wt[k, j], axis=k), name="matmul")
    add = te.compute((9, 13), lambda i, j: mm[i, j] + bias[j], name="T_add")
    out = te.compute((9, 13), lambda i, j: te.max(add[i, j], 0.0), name="relu")
    return te.create_prim_func([a, w, bias, out]).with_attr("global_symbol", "main")


MODELS = {
    "resnet18": lambda: bm.resnet18_model(size=32, width=8, num_classes=10),
    "mobilenetv2": lambda: bm.mobilenetv2_model(size=32, width_mult=0.25, num_classes=10),
    "transformer": lambda: bm.transformer_encoder_model(seq_len=16, d_model=32, num_heads=2, d_ff=64),
    "mlp": lambda: bm.mlp_model(batch=4, sizes=(32, 64, 64, 10)),
    "conv_7_13": lambda: bm.conv_model(in_channels=7, out_channels=13, size=9),
    "conv_s2": lambda: bm.conv_model(in_channels=13, out_channels=7, size=11, stride=2, relu=False),
    "conv_1x1": lambda: bm.conv_model(in_channels=13, out_channels=16, size=7, kernel=1),
    "depthwise_13": lambda: bm.conv_model(in_channels=13, out_channels=13, groups=13, size=9),
    "grouped": lambda: bm.conv_model(in_channels=6, out_channels=9, groups=3, size=7),
    "matmul_17_31_23": lambda: bm.matmul_model(m=17, k=31, n=23),
    "matmul_64": lambda: bm.matmul_model(m=64, k=32, n=64),
    "matmul_k1024": lambda: bm.matmul_model(m=8, k=1024, n=32),
    "dense_wide": lambda: bm.matmul_model(m=8, k=256, n=256),
    "conv_68_14": lambda: bm.conv_model(in_channels=68, out_channels=68, size=14, kernel=1),
    "conv_s2_wide": lambda: bm.conv_model(in_channels=16, out_channels=64, size=32, stride=2),
    "conv_c32_14": lambda: bm.conv_model(in_channels=32, out_channels=64, size=14, kernel=1),
    "conv_c8_14": lambda: bm.conv_model(in_channels=8, out_channels=64, size=14, kernel=1),
    "conv1x1_56": lambda: bm.conv_model(in_channels=64, out_channels=256, size=56, kernel=1),
    "conv1x1_late": lambda: bm.conv_model(in_channels=256, out_channels=512, size=14, kernel=1),
    "pool_14": lambda: _pool_model(14, 1),
    "pool_s2": lambda: _pool_model(28, 2),
    "depthwise_14": lambda: bm.conv_model(in_channels=24, out_channels=24, groups=24, size=14, kernel=3),
    "gemm_relu": lambda: bm.gemm_model(batch=5, in_features=19, out_features=11, relu=True),
    "nt_matmul": _nt_matmul_model,
    "conv_affine": _conv_affine_model,
    "odd": _odd_model,
    # 48 output channels keep it a direct convolution: 64 -> 64 would be Winograd's (tuner.winograd)
    "conv_bench": lambda: bm.conv_model(in_channels=64, out_channels=48, size=56),
}
NETWORKS = ("resnet18", "mobilenetv2", "transformer", "mlp")


@functools.lru_cache(maxsize=None)
def tasks(model_name: str) -> tuple:
    if model_name == "te_transposed":
        return (("te_transposed_matmul", _te_transposed_matmul()),)
    fused = fuse(from_onnx(MODELS[model_name]()), TARGET)  # the product's path: weights marked layout-free
    return tuple((gv.name_hint, f.with_attr("global_symbol", "main"))
                 for gv, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc))


def task(model_name: str, name: str):
    return dict(tasks(model_name))[name]


def task_by_rule(model_name: str, rule: str) -> list:
    return [(name, f) for name, f in tasks(model_name) if ss.space_for(f, TARGET).rule == rule]


# ----- numerics --------------------------------------------------------------------------
def _random_args(func, rng) -> list:
    arrays = []
    for param in func.params:
        shape, dtype = [int(d) for d in param.ty.shape], str(param.ty.dtype)
        if "float" in dtype:
            arrays.append(rng.standard_normal(shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, 4, shape).astype(dtype))
    return arrays


def assert_matches(func, scheduled: tvm.IRModule, seed: int = 0) -> None:
    """Compile the scheduled and the unscheduled function into one library and
    compare every buffer after running both on the same inputs."""
    both = tvm.IRModule({"main": scheduled["main"],
                         "reference": func.with_attr("global_symbol", "reference")})
    lib = tvm.compile(both, target=TARGET)
    arrays = _random_args(func, np.random.default_rng(seed))
    got = [tvm.runtime.tensor(a.copy()) for a in arrays]
    want = [tvm.runtime.tensor(a.copy()) for a in arrays]
    lib["main"](*got)
    lib["reference"](*want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-4)


# ----- rule selection --------------------------------------------------------------------
def _expected_rule(name: str) -> str:
    if "winograd_input" in name or "winograd_output" in name:
        return "winograd"
    if any(key in name for key in ("conv2d", "matmul", "pool", "winograd_gemm")):
        return "tiled_reduction"
    if any(key in name for key in ("softmax", "layer_norm", "mean")):
        return "reduction"
    return "elementwise"


@pytest.mark.parametrize("model_name", NETWORKS)
def test_every_network_task_gets_its_rule(model_name, capsys):
    rules = {name: ss.space_for(f, TARGET).rule for name, f in tasks(model_name)}
    with capsys.disabled():
        print(f"\n{model_name}: " + ", ".join(f"{n}={r}" for n, r in sorted(rules.items())))
    assert "fallback" not in rules.values()
    assert rules == {name: _expected_rule(name) for name in rules}


def test_odd_functions_get_a_space_and_fallback_is_reported():
    rules = {name: ss.space_for(f, TARGET).rule for name, f in tasks("odd")}
    assert rules["argmax"] == "fallback"  # a two-output (value, index) reduction
    assert rules["fast_softmax"] == "reduction" and rules["max"] == "reduction"  # fast math: tuner.tasks.fuse
    assert rules["fused_fast_exp_concatenate"] == "elementwise"
    assert rules["max_pool2d"] == "tiled_reduction"
    for name, f in tasks("odd"):
        space = ss.space_for(f, TARGET)
        assert_matches(f, space.apply(space.default_config()).mod)


def _scan_and_nested_funcs():
    """Two hand-written functions outside the normal form: a serial scan (opaque
    iterator) and a block nested in another block."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def scan(a: T.Buffer((16,), "float32"), b: T.Buffer((16,), "float32")):
        T.func_attr({"global_symbol": "main"})
        for i in range(16):
            with T.sblock("scan"):
                vi = T.axis.opaque(16, i)
                T.reads(a[0:16], b[0:16])
                T.writes(b[vi])
                b[vi] = a[vi] + T.if_then_else(vi > 0, b[vi - 1], T.float32(0))

    @T.prim_func(s_tir=True)
    def nested(a: T.Buffer((8, 8), "float32"), b: T.Buffer((8, 8), "float32")):
        T.func_attr({"global_symbol": "main"})
        for i in range(8):
            with T.sblock("outer"):
                vi = T.axis.spatial(8, i)
                for j in range(8):
                    with T.sblock("inner"):
                        vj = T.axis.spatial(8, j)
                        b[vi, vj] = a[vi, vj] * T.float32(2)

    return scan, nested


def test_fallback_parallelizes_where_legal_and_never_fails():
    scan, nested = _scan_and_nested_funcs()
    scan_space, nested_space = ss.space_for(scan, TARGET), ss.space_for(nested, TARGET)
    assert scan_space.rule == nested_space.rule == "fallback"
    assert scan_space.knobs == {"parallel": (False,)}  # a scan stays serial and unscheduled
    tvm.ir.assert_structural_equal(scan_space.apply(scan_space.default_config()).mod["main"], scan)
    assert "T.parallel" in nested_space.apply(nested_space.default_config()).mod.script()
    for func, space in ((scan, scan_space), (nested, nested_space)):
        for value in space.knobs["parallel"]:
            assert_matches(func, space.apply(Config.from_dict("fallback", {"parallel": value})).mod)


# ----- correctness -----------------------------------------------------------------------
@pytest.mark.parametrize("model_name", NETWORKS)
def test_default_configs_compute_the_same(model_name):
    for name, f in tasks(model_name):
        space = ss.space_for(f, TARGET)
        assert_matches(f, space.apply(space.default_config()).mod)


def test_default_configs_add_the_tied_register_blocks():
    (name, func), = tasks("matmul_64")
    space = ss.space_for(func, AVX512)
    configs = space.default_configs()
    assert configs[0] == space.default_config()
    blocks = [(c.get("tile_i0")[-1], c.get("tile_i1")[-1]) for c in configs]
    # 16 zmm accumulators each: two registers wide first, then widest vector first
    assert blocks == [(8, 32), (4, 64), (16, 16)]
    assert [space.family(c) for c in configs] == [("i1", 8, 32), ("i1", 4, 64), ("i1", 16, 16)]
    for config in configs:
        space.validate(config)
        changed = {k for k, v in config.knobs if configs[0].get(k) != v}
        assert changed <= {"tile_i0", "tile_i1"}
        assert_matches(func, space.apply(config).mod)
    elementwise = ss.space_for(task_by_rule("transformer", "elementwise")[0][1], TARGET)
    assert elementwise.default_configs() == [elementwise.default_config()]
    assert elementwise.family(elementwise.default_config()) == ()


def test_a_chunked_reduction_is_tied_with_the_whole_axis_inner():
    (name, func), = tasks("matmul_k1024")
    space = ss.space_for(func, AVX2)
    default, *tied = space.default_configs()
    reduction = [k for k, v in default.knobs if k.startswith("tile_") and len(v) == 2]
    assert len(reduction) == 1 and default.get(reduction[0]) == (4, 256)  # chunks of 256
    whole = tied[-1]
    assert whole.get(reduction[0]) == (1, 1024)
    assert {k for k, v in whole.knobs if default.get(k) != v} == set(reduction)
    assert_matches(func, space.apply(whole).mod)
    # a reduction of 32 is not chunked, so nothing is added: only the register blocks are tied
    (name, small), = tasks("matmul_64")
    assert all(c.get(reduction[0]) == (1, 32) for c in ss.space_for(small, AVX2).default_configs())


def test_the_cores_split_the_weights_when_they_outweigh_the_rows():
    (name, dense), = tasks("dense_wide")  # 8 rows of 256 against a 256 x 256 weight
    default = ss.space_for(dense, AVX2).default_config()
    assert default.get("tile_i0")[0] == 1 and default.get("tile_i1")[0] > 1  # each core its own columns
    assert_matches(dense, ss.space_for(dense, AVX2).apply(default).mod)
    conv = task("conv_bench", "fused_conv2d_add_relu")  # a 56 x 56 map against a 48 x 64 x 3 x 3 weight
    tiles = ss.space_for(conv, AVX2).default_config().as_dict()
    assert tiles["tile_yy"][0] > 1 and tiles["tile_ff"][0] == 1  # each core its own output rows
    # a 1x1 conv has no window, but the same rows: a 56 x 56 map against a 256 x 64 weight
    conv = task("conv1x1_56", "fused_conv2d_add_relu")
    tiles = ss.space_for(conv, AVX2).default_config().as_dict()
    assert tiles["tile_pp"][0] > 1 and tiles["tile_ff"][0] == 1  # pp: the pixels, one flat axis
    assert_matches(conv, ss.space_for(conv, AVX2).apply(ss.space_for(conv, AVX2).default_config()).mod)


def test_pixels_loop_inside_a_chunked_reduction_where_each_core_sweeps_the_whole_map():
    """A late 1x1 conv (14 x 14 map, 512 x 256 weight): each core takes its output channels and
    sweeps the map; the reduction is chunked and the map's pixel blocks loop inside the chunk, so
    neighbouring blocks share the chunk's input lines. Not where the rows are split over the cores
    (a 56 x 56 map), nor in a matmul, whose rows read the reduction contiguously."""
    (name, conv), = tasks("conv1x1_late")
    space = ss.space_for(conv, AVX2)
    tiles = space.default_config().as_dict()
    assert tiles["tile_ff"][0] > 1 and tiles["tile_rc"] == [8, 32]
    for axis in ("tile_pp", "tile_ff"):  # the channels' blocks too: a core's outputs fit in L2
        assert tiles[axis][1] == 1 and tiles[axis][2] > 1, tiles  # inside the chunk (S2), not S1
    assert_matches(conv, space.apply(space.default_config()).mod)
    rows = ss.space_for(task("conv1x1_56", "fused_conv2d_add_relu"), AVX2).default_config().as_dict()
    assert rows["tile_rc"] == [1, 64] and rows["tile_pp"][2] == 1
    (name, dense), = tasks("dense_wide")
    dense_tiles = ss.space_for(dense, AVX2).default_config().as_dict()
    assert dense_tiles["tile_k"] == [1, 256] and dense_tiles["tile_i0"][2] == 1, dense_tiles


def test_a_default_vector_fills_whole_registers_or_fits_in_one():
    (name, func), = tasks("conv_68_14")  # 68 output channels: 4 lanes; 14 columns
    for target, lanes in ((AVX2, 7), (AVX512, 14)):  # 14 lanes would split 8 + 6 on AVX2
        space = ss.space_for(func, target)
        default = space.default_config()
        assert default.get("vector_axis") == "xx" and default.get("tile_xx")[-1] == lanes
        assert_matches(func, space.apply(default).mod)


def test_a_default_vector_runs_along_the_output_channels_from_16_products_per_output():
    """A 1x1 conv from 32 channels (ShuffleNet's and MobileNet's small pointwise convs) vectorizes its
    output channels with packed weights rather than 7 lanes of a 14-wide row; from 8 channels the
    transposing write-back costs more than it saves, and the row is the vector."""
    for model, vector in (("conv_c32_14", "ff"), ("conv_c8_14", "xx")):
        (name, func), = tasks(model)
        space = ss.space_for(func, AVX2)
        default = space.default_config()
        assert default.get("vector_axis") == vector, model
        assert default.get("pack") == (vector == "ff")
        assert_matches(func, space.apply(default).mod)


def test_a_pool_vectorizes_whole_output_rows_and_blocks_rows():
    """A stride-1 pool over a 14-wide map: one 14-lane vector per row, 2 rows per register block
    (6 accumulators of two registers allow 2 of 14); a stride-2 one keeps its 7-lane default; a
    depthwise conv is a stencil too."""
    (name, func), = tasks("pool_14")
    space = ss.space_for(func, AVX2)
    default = space.default_config()  # ax2, ax3: the output rows and columns
    assert default.get("vector_axis") == "ax3" and default.get("tile_ax3")[-1] == 14
    assert default.get("tile_ax2")[-1] == 2 and space.default_configs() == [default]
    assert_matches(func, space.apply(default).mod)
    (name, strided), = tasks("pool_s2")
    default = ss.space_for(strided, AVX2).default_config()
    assert default.get("tile_ax3")[-1] == 7  # 14 columns, read every other one
    assert_matches(strided, ss.space_for(strided, AVX2).apply(default).mod)
    depthwise = task("depthwise_14", "fused_conv2d_add_relu")  # the same with 9 weights per channel
    default = ss.space_for(depthwise, AVX2).default_config()
    assert default.get("vector_axis") == "xx" and default.get("tile_xx")[-1] == 14
    assert default.get("tile_yy")[-1] == 2
    assert_matches(depthwise, ss.space_for(depthwise, AVX2).apply(default).mod)


def test_no_default_vector_along_columns_an_input_reads_with_a_stride():
    (name, func), = tasks("conv_s2_wide")  # 16 output columns would fill two registers, but read every other one
    space = ss.space_for(func, AVX2)
    conv = next(b for b in analyze(func).blocks if b.is_reduction)
    strided = {r.buffer: r.strided for r in conv.reads}
    assert "xx" in strided["pad_temp"] and "ff" not in strided["pad_temp"]
    default = space.default_config()
    assert default.get("vector_axis") == "ff"
    assert_matches(func, space.apply(default).mod)


def test_register_blocks_are_sized_by_the_targets_vector_registers():
    (name, func), = tasks("matmul_64")
    assert ss.vector_unit(AVX512) == VectorUnit(lanes=16, registers=32)
    assert ss.vector_unit(AVX2) == VectorUnit(lanes=8, registers=16)
    space = ss.space_for(func, AVX2)
    blocks = [(c.get("tile_i0")[-1], c.get("tile_i1")[-1]) for c in space.default_configs()]
    # 8 ymm accumulators each (12 allowed, but the rows must divide 64), two registers wide first; one
    # row of 64 lanes (8 accumulators too) is not among them: it reloads the weights for every input
    assert blocks == [(4, 16), (2, 32), (8, 8)]
    for config in space.default_configs():
        assert_matches(func, space.apply(config).mod)


def test_sample_family_draws_the_rest_of_a_config_afresh():
    (name, func), = tasks("matmul_64")
    space = ss.space_for(func, TARGET)
    rng = np.random.default_rng(0)
    for parent in space.default_configs():
        drawn = [space.sample_family(parent, rng) for _ in range(12)]
        for config in drawn:
            space.validate(config)
            assert space.family(config) == space.family(parent)
        assert len({c.to_json() for c in drawn} - {parent.to_json()}) >= 8  # new configs, not the parent
        cache_tiles = {(c.get("tile_i0")[:-1], c.get("tile_i1")[:-1]) for c in drawn}
        assert len(cache_tiles) >= 6  # the levels outside the register block vary
    elementwise = ss.space_for(task_by_rule("transformer", "elementwise")[0][1], TARGET)
    assert elementwise.is_valid(elementwise.sample_family(elementwise.default_config(), rng))


def _random_configs(space, rng, count: int) -> list:
    configs = [space.sample(rng) for _ in range(count)]
    walk = space.default_config()
    for _ in range(count):
        walk = space.mutate(walk, rng)
        configs.append(walk)
    return configs


RANDOM_CASES = [
    ("conv_7_13", "tiled_reduction"), ("conv_s2", "tiled_reduction"), ("conv_1x1", "tiled_reduction"),
    ("depthwise_13", "tiled_reduction"), ("grouped", "tiled_reduction"), ("conv_affine", "tiled_reduction"),
    ("matmul_17_31_23", "tiled_reduction"), ("gemm_relu", "tiled_reduction"),
    ("nt_matmul", "tiled_reduction"), ("te_transposed", "tiled_reduction"), ("odd", "tiled_reduction"),
    ("transformer", "tiled_reduction"), ("resnet18", "tiled_reduction"), ("mobilenetv2", "tiled_reduction"),
    ("transformer", "elementwise"), ("odd", "elementwise"),
    ("transformer", "reduction"), ("resnet18", "reduction"), ("odd", "reduction"),
    ("odd", "fallback"),
]


@pytest.mark.parametrize("model_name,rule", RANDOM_CASES)
def test_random_configs_are_rejected_or_correct(model_name, rule):
    rng = np.random.default_rng(7)
    cases = task_by_rule(model_name, rule)[:3]
    assert cases, f"no {rule} task in {model_name}"
    applied = 0
    for name, f in cases:
        space = ss.space_for(f, TARGET)
        for config in _random_configs(space, rng, 3):
            space.validate(config)  # sample and mutate only return valid configs
            try:
                scheduled = space.apply(config)
            except InvalidConfigError:
                continue
            assert_matches(f, scheduled.mod, seed=applied)
            applied += 1
    assert applied > 0


def test_mutate_changes_one_or_two_knobs():
    space = ss.space_for(task("conv_7_13", "fused_conv2d_add_relu"), TARGET)
    rng = np.random.default_rng(3)
    config = space.default_config()
    for _ in range(20):
        neighbour = space.mutate(config, rng)
        changed = [k for k, v in neighbour.knobs if config.get(k) != v]
        assert 1 <= len(changed) <= 2
        config = neighbour


def test_neighbours_change_every_small_knob_one_at_a_time():
    space = ss.space_for(task("conv_7_13", "fused_conv2d_add_relu"), TARGET)
    config = space.default_config()
    neighbours = space.neighbours(config)
    small = {name for name, choices in space.knobs.items() if len(choices) <= 8}
    assert {"unroll", "order", "parallel"} <= small and small != set(space.knobs)
    assert len({c.to_json() for c in neighbours}) == len(neighbours)
    for neighbour in neighbours:
        space.validate(neighbour)
        changed = [k for k, v in neighbour.knobs if config.get(k) != v]
        assert len(changed) == 1 and changed[0] in small
    unrolls = {c.get("unroll") for c in neighbours if c.get("unroll") != config.get("unroll")}
    assert unrolls == set(space.knobs["unroll"]) - {config.get("unroll")}  # every other unroll step
    assert space.neighbours(config, max_choices=1) == []


def test_project_fits_another_tasks_config_and_keeps_what_it_can():
    big = ss.space_for(task("conv_bench", "fused_conv2d_add_relu"), TARGET)  # 64 -> 48 channels, 56x56
    small = ss.space_for(task("conv_7_13", "fused_conv2d_add_relu"), TARGET)  # 7 -> 13 channels, 9x9
    rng = np.random.default_rng(5)
    projected = 0
    for _ in range(20):
        donor = big.sample(rng)
        config = small.project(donor)
        if config is None:
            continue
        projected += 1
        small.validate(config)
        kept = [name for name, value in donor.knobs if value in small.knobs[name]]
        assert sum(config.get(name) == donor.get(name) for name in kept) >= len(kept) - 1  # one may be reset
        for name, value in donor.knobs:
            if isinstance(value, tuple):
                assert len(config.get(name)) == len(value)
    assert projected >= 15
    own = small.sample(rng)
    assert small.project(own) == own
    assert small.project(Config.from_dict("elementwise", {"parallel": 1})) is None
    assert_matches(small.func, small.apply(small.project(big.default_config())).mod)


# ----- determinism and serialization -------------------------------------------------------
def test_apply_is_deterministic_across_fresh_spaces():
    f = task("conv_7_13", "fused_conv2d_add_relu")
    space = ss.space_for(f, TARGET)
    config = space.sample(np.random.default_rng(1))
    again = Config.from_json(config.to_json())
    other = ss.space_for(f.with_attr("global_symbol", "main"), TARGET)
    tvm.ir.assert_structural_equal(space.apply(config).mod, other.apply(again).mod)
    tvm.ir.assert_structural_equal(space.apply(config).mod, space.apply(config).mod)


def test_config_json_round_trip_and_hash():
    config = Config.from_dict("tiled_reduction", {"tile_i": [2, 3, 1, 4], "order": "SSRSRS",
                                                  "pack": True, "unroll": 64})
    text = config.to_json()
    knobs = {"order": "SSRSRS", "pack": True, "tile_i": [2, 3, 1, 4], "unroll": 64}
    assert json.loads(text) == {"rule": "tiled_reduction", "knobs": knobs}
    assert Config.from_json(text) == config and hash(Config.from_json(text)) == hash(config)
    assert config.as_dict()["tile_i"] == [2, 3, 1, 4] and config.knobs[0][0] == "order"
    for space in (ss.space_for(f, TARGET) for _, f in tasks("transformer")):
        default = space.default_config()
        assert Config.from_json(default.to_json()) == default
        choices = [c for knob in space.knobs.values() for c in knob]
        assert all(isinstance(c, (int, str, bool, tuple)) for c in choices)


# ----- bad configs -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def conv_space():
    return ss.space_for(task("conv_7_13", "fused_conv2d_add_relu"), TARGET)


def test_missing_knob_is_named(conv_space):
    values = conv_space.default_config().as_dict()
    del values["unroll"]
    with pytest.raises(InvalidConfigError, match="missing knob.*unroll"):
        conv_space.apply(Config.from_dict("tiled_reduction", values))


def test_unknown_value_and_knob_are_named(conv_space):
    default = conv_space.default_config()
    with pytest.raises(InvalidConfigError, match=r"knob 'unroll' value 3 is not allowed; allowed: \[0, 16"):
        conv_space.apply(default.replace(unroll=3))
    with pytest.raises(InvalidConfigError, match=r"knob 'tile_ff' value \[2, 2, 2, 2\]"):
        conv_space.validate(default.replace(tile_ff=[2, 2, 2, 2]))  # product 16 != 13
    with pytest.raises(InvalidConfigError, match="unknown knob.*'warp'"):
        conv_space.validate(default.replace(warp=4))


def test_wrong_rule_and_wrong_function_are_rejected(conv_space):
    values = conv_space.default_config().as_dict()
    with pytest.raises(InvalidConfigError, match="rule 'elementwise'.*'tiled_reduction'"):
        conv_space.apply(Config.from_dict("elementwise", values))
    matmul = ss.space_for(task("matmul_17_31_23", "matmul"), TARGET)
    with pytest.raises(InvalidConfigError, match="knob"):
        matmul.apply(conv_space.default_config())


def test_illegal_combination_and_bad_json_are_rejected(conv_space):
    default = conv_space.default_config()
    with pytest.raises(InvalidConfigError, match="'SRSSRS'.*write_back=0"):
        conv_space.validate(default.replace(order="SRSSRS", write_back=1))
    with pytest.raises(InvalidConfigError, match="parse"):
        Config.from_json("{not json")
    with pytest.raises(InvalidConfigError, match="exactly the keys"):
        Config.from_json('{"rule": "x"}')
    with pytest.raises(InvalidConfigError, match="knob 'tile'"):
        Config.from_dict("elementwise", {"tile": [1.5, 2]})


def test_schedule_errors_become_invalid_config_errors():
    class ParallelReduction:  # a rule that asks TVM for something illegal
        name, knobs = "broken", {"x": (1,)}

        def default_values(self):
            return {"x": 1}

        def check(self, values):
            pass

        def schedule(self, sch, values):
            sch.parallel(sch.get_loops(sch.get_sblock("matmul"))[-1])  # the reduction loop

    space = SearchSpace(task("matmul_17_31_23", "matmul"), TARGET, ParallelReduction())
    with pytest.raises(InvalidConfigError, match="cannot be applied"):
        space.apply(space.default_config())


# ----- what the default conv schedule looks like ------------------------------------------
def _block_names(func) -> set:
    names = set()
    tvm_ffi.structural_walk(func.body, (tvm.s_tir.stmt.SBlock, lambda b: names.add(b.name_hint)),
                            order="post")
    return names


@pytest.mark.parametrize("model_name,name,parallel", [
    ("conv_bench", "fused_conv2d_add_relu", True),
    ("conv_affine", "fused_conv2d_add_add1_relu", False),  # 47K MACs: one task is cheaper
])
def test_default_conv_schedule_is_parallel_vectorized_and_fused(model_name, name, parallel):
    f = task(model_name, name)
    space = ss.space_for(f, TARGET)
    assert space.rule == "tiled_reduction"
    mod = space.apply(space.default_config()).mod
    compute = split_prepack(mod["main"]).compute.script()  # as built: weight packing runs at build time
    assert ("T.parallel" in compute) == parallel and "T.vectorized" in compute
    before, after = _block_names(f), _block_names(mod["main"])
    epilogue = {n for n in before if n not in ("root", "pad_temp", "conv2d_nchw")}
    assert epilogue and not epilogue & after, f"epilogue blocks still separate: {sorted(epilogue & after)}"
    body = mod["main"].body.block.body
    nests = list(body) if isinstance(body, tvm.tirx.SeqStmt) else [body]
    # (the packed-weight copy, then) one nest holding padding, conv and epilogue
    assert nests[-1].kind == (tvm.tirx.ForKind.PARALLEL if parallel else tvm.tirx.ForKind.SERIAL)
    assert {"conv2d_nchw_update", "conv2d_nchw_intermediate_global"} <= after
