"""costmodel.features on real scheduled modules of a small ONNX conv (built with onnx.helper)."""

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

import costmodel  # noqa: E402
from costmodel import CostModelError, extract, feature_names, task_features  # noqa: E402
from costmodel.tir_facts import LOOP_FACT_NAMES, TASK_FACT_NAMES  # noqa: E402

TARGET = {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}
CONV_SHAPE = {"c": 8, "k": 16, "hw": 10}


def conv_onnx(c: int, k: int, hw: int):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, c, 3, 3)).astype("float32"), "W")
    bias = numpy_helper.from_array(rng.standard_normal(k).astype("float32"), "B")
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["z"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, k, hw, hw])], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def conv_task(target):
    """The fused conv PrimFunc of the model, named "main"."""
    import tvm.relax.frontend.onnx
    from tvm import relax

    mod = relax.frontend.onnx.from_onnx(conv_onnx(**CONV_SHAPE))
    with target:
        fused = relax.get_pipeline("zero")(mod)
    name = next(gv.name_hint for gv, f in fused.functions.items()
                if isinstance(f, tvm.tirx.PrimFunc) and "conv" in gv.name_hint)
    return fused[name].with_attr("global_symbol", "main")


@pytest.fixture(scope="module")
def target():
    return tvm.target.Target(TARGET)


@pytest.fixture(scope="module")
def task(target):
    return conv_task(target)


@pytest.fixture(scope="module")
def space(task, target):
    import search_spaces

    return search_spaces.space_for(task, target)


@pytest.fixture(scope="module")
def configs(space):
    rng = np.random.default_rng(0)
    found = [space.default_config()]
    for _ in range(40):
        config = space.sample(rng)
        if config not in found:
            found.append(config)
        if len(found) == 5:
            break
    return found


def column(name, with_task=False):
    return feature_names(with_task).index(name)


def test_extract_gives_fixed_width_finite_rows(space, configs, target):
    mods = [space.apply(config).mod for config in configs]
    features = extract(mods, target)
    assert features.shape == (len(mods), len(feature_names())) and features.dtype == np.float32
    assert np.all(np.isfinite(features))
    assert len({row.tobytes() for row in features}) == len(mods), "different schedules, different rows"
    again = extract([space.apply(configs[1]).mod, space.apply(configs[0])], target)  # a Schedule works too
    assert np.array_equal(again, features[[1, 0]]), "the same schedule, the same row"
    assert np.array_equal(extract(mods, target, num_threads=2), features)


def test_layout_and_names(task, target):
    names = feature_names()
    assert len(names) == len(set(names)) == 3 * 164 + len(LOOP_FACT_NAMES)
    assert feature_names(with_task=True)[len(names):] == list(TASK_FACT_NAMES)
    assert isinstance(costmodel.FEATURE_VERSION, (int, str))
    assert extract([], target).shape == (0, len(names))


def test_loop_facts_see_parallel_unrolled_and_vector_loops(task, space, target):
    from tvm.s_tir import Schedule

    sch = Schedule(task)
    n, f, _, x, *_ = sch.get_loops(sch.get_sblock("conv2d_nchw"))
    sch.parallel(sch.fuse(n, f))
    sch.unroll(sch.split(x, [None, 5])[1])
    plain, scheduled, default = extract(
        [tvm.IRModule({"main": task}), sch.mod, space.apply(space.default_config()).mod], target)
    parallel = column("loop.parallel_work_fraction")
    assert plain[parallel] == 0.0 and 0.0 < scheduled[parallel] <= 1.0
    assert scheduled[column("loop.parallel_extent")] == pytest.approx(math.log2(1 + CONV_SHAPE["k"]))
    assert plain[column("loop.unrolled_extent")] == 0.0
    assert scheduled[column("loop.unrolled_extent")] == pytest.approx(math.log2(1 + 5))
    assert scheduled[column("store.sum.parallel.num")] > 0.0 == plain[column("store.sum.parallel.num")]
    assert default[column("loop.vector_lanes")] > 0.0 == plain[column("loop.vector_lanes")]


def test_loop_facts_see_which_loops_are_innermost_around_the_heaviest_store(task, target):
    """Schedules that differ only in the order of the reduction loops (input channels innermost, or
    the kernel window) get different rows: pooled PerStoreFeature could not tell such schedules
    apart (the input-channel split of a 7x7 conv, up to 2x in speed)."""
    from tvm.s_tir import Schedule

    sch = Schedule(task)
    *_, rc, ry, rx = sch.get_loops(sch.get_sblock("conv2d_nchw"))
    sch.reorder(ry, rx, rc)
    window_inner, channels_inner = extract([tvm.IRModule({"main": task}), sch.mod], target)
    c = CONV_SHAPE["c"]

    def inner(row, depth):
        return row[column(f"loop.heaviest_store_inner_work_{depth}")]

    assert [inner(window_inner, d) for d in (1, 2, 3)] == pytest.approx([math.log2(1 + v) for v in (3, 9, 9 * c)])
    assert [inner(channels_inner, d) for d in (1, 2, 3)] == pytest.approx([math.log2(1 + v) for v in (c, 3 * c, 9 * c)])
    whole = math.log2(1 + CONV_SHAPE["k"] * CONV_SHAPE["hw"] ** 2 * 9 * c)  # all 7 loops, n of extent 1 included
    assert inner(window_inner, 8) == inner(channels_inner, 8) == pytest.approx(whole)
    assert window_inner[column("loop.heaviest_store_work")] == pytest.approx(whole)


def test_task_features(task, target):
    values = task_features(task)
    assert values.shape == (len(TASK_FACT_NAMES),) and values.dtype == np.float32
    facts = dict(zip(TASK_FACT_NAMES, values))
    c, k, hw = CONV_SHAPE["c"], CONV_SHAPE["k"], CONV_SHAPE["hw"]
    flops = tvm.s_tir.analysis.estimate_tir_flops(tvm.IRModule({"main": task}))
    assert facts["task.flops"] == pytest.approx(math.log2(1 + flops))
    assert facts["task.reduction_iterations"] == pytest.approx(math.log2(1 + c * 9))
    assert facts["task.output_elements"] == pytest.approx(math.log2(1 + k * hw * hw))
    rows = extract([tvm.IRModule({"main": task})] * 2, target, task_func=task)
    assert rows.shape == (2, len(feature_names(with_task=True)))
    assert np.array_equal(rows[:, -len(TASK_FACT_NAMES):], np.tile(values, (2, 1)))


def test_extract_rejects_bad_input(task, target):
    with pytest.raises(CostModelError, match="candidate 1: the module has no 'main'"):
        extract([tvm.IRModule({"main": task}), tvm.IRModule({"conv": task})], target)
    with pytest.raises(CostModelError, match="candidate 0: expected a tvm.IRModule"):
        extract([task], target)
    with pytest.raises(CostModelError, match="target must be a tvm.target.Target"):
        extract([tvm.IRModule({"main": task})], TARGET)
    with pytest.raises(CostModelError, match="num_threads must be a positive integer"):
        extract([tvm.IRModule({"main": task})], target, num_threads=0)
    with pytest.raises(CostModelError, match="needs a tvm.tirx.PrimFunc"):
        task_features(tvm.IRModule({"main": task}))


def test_extract_does_not_import_tensor_intrin():
    """A fresh process: extraction must not pay the ~22 s ``tvm.s_tir.tensor_intrin`` import."""
    script = textwrap.dedent(f"""
        import sys, time
        import tvm
        from tests.test_costmodel_features import conv_task, TARGET
        from costmodel import extract
        target = tvm.target.Target(TARGET)
        start = time.perf_counter()
        extract([tvm.IRModule({{"main": conv_task(target)}})], target)
        print("tensor_intrin" if "tvm.s_tir.tensor_intrin" in sys.modules else "clean", time.perf_counter() - start)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    verdict, seconds = done.stdout.split()
    assert verdict == "clean" and float(seconds) < 10.0
