"""Weight prepacking: constant weights are marked layout-free, packed once at build time, and the
measurement times the compute function alone on prepacked inputs."""

import numpy as np
import pytest
import tvm
from tvm import relax

import search_spaces
import tuner
from benchmarks.models import GraphBuilder, conv_model, matmul_model
from tuner.prepack import prepack_weights, split_prepack


def _conv_with_weight_input():
    """A 3x3 conv whose weight is a graph input, not an initializer."""
    b = GraphBuilder()
    y = b.op("Conv", ["x", "w"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    return b.make_model("conv_w", {"x": [1, 8, 10, 10], "w": [32, 8, 3, 3]}, y, [1, 32, 10, 10])


@pytest.fixture(scope="module")
def conv_task():
    backend = tuner.resolve_backend()
    model = tuner.load(conv_model(in_channels=24, out_channels=32, size=14, bias=True, relu=True))
    (task,) = tuner.partition(model, backend).tasks
    return task


def test_constant_weights_are_marked_layout_free(conv_task, backend):
    params = [p.name for p in conv_task.func.params]
    marked = [params[int(i)] for i in conv_task.func.attrs["layout_free_buffers"]]
    assert len(marked) == 2 and params[0] not in marked and params[-1] not in marked  # weight and bias
    (task,) = tuner.partition(tuner.load(_conv_with_weight_input()), backend).tasks
    assert "layout_free_buffers" not in (task.func.attrs or {})
    space = search_spaces.space_for(task.func, backend.tvm_target())
    assert split_prepack(space.apply(space.default_config()).mod["main"]).prepack is None


def _run(lib, name, arrays):
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib[name](*tensors)
    return [t.numpy() for t in tensors]


def _check_split(task, split, backend):
    """The prepack and compute functions of ``split`` give what ``task``'s function gives;
    returns the packed weight's shape."""
    ((packed_shape, _),) = split.packed_shapes()
    target = backend.tvm_target()
    lib = tvm.compile(split.module(), target=target)
    reference = tvm.compile(tvm.IRModule({"main": task.func}), target=target)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32") for p in task.func.params]
    want = _run(reference, "main", arrays)[-1]
    packed = _run(lib, "prepack", [arrays[1], np.zeros(packed_shape, "float32")])[1]
    got = _run(lib, "main", [arrays[0], packed, *arrays[2:]])[-1]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return packed_shape


def test_split_prepack_computes_the_same(conv_task, backend):
    space = search_spaces.space_for(conv_task.func, backend.tvm_target())
    config = space.default_config()
    assert config.get("pack") is True
    split = split_prepack(space.apply(config).mod["main"])
    assert split.prepack is not None and split.indices == (1,)
    packed_shape = _check_split(conv_task, split, backend)
    weight_shape = [int(d) for d in conv_task.func.params[1].ty.shape]
    assert sorted(packed_shape) != packed_shape or len(packed_shape) > len(weight_shape)

    unpacked = split_prepack(space.apply(config.replace(pack=False)).mod["main"])
    assert unpacked.prepack is None and unpacked.indices == ()


def test_matmul_weights_are_packed_into_panels(backend):
    """A matmul weight W[k, n], vectorized along n (its last dimension), is packed into panels
    W[n // L, k, L] of the vector tile's width, read down k contiguously; an input that is not a
    weight keeps its layout."""
    (task,) = tuner.partition(tuner.load(matmul_model(m=32, k=48, n=64)), backend).tasks
    space = search_spaces.space_for(task.func, backend.tvm_target())
    config = space.default_config()
    assert config.get("pack") is True and config.get("vector_axis") == "i1"
    lanes = config.get("tile_i1")[-1]
    assert 1 < lanes < 64
    split = split_prepack(space.apply(config).mod["main"])
    assert split.indices == (1,)
    assert _check_split(task, split, backend) == [64 // lanes, 48, lanes]

    b = GraphBuilder()
    y = b.op("MatMul", ["a", "b"])
    model = b.make_model("mm", {"a": [32, 48], "b": [48, 64]}, y, [32, 64])
    (task,) = tuner.partition(tuner.load(model), backend).tasks
    space = search_spaces.space_for(task.func, backend.tvm_target())
    assert space.default_config().get("pack") is False
    assert not space.is_valid(space.default_config().replace(pack=True))


def test_build_packs_weights_once(backend):
    from tuner.build import apply_schedules

    model = tuner.load(conv_model(in_channels=24, out_channels=32, size=14))
    module, _ = apply_schedules(tuner.partition(model, backend), backend)
    packed = prepack_weights(module, backend.tvm_target())
    names = [gv.name_hint for gv, f in packed.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert any(name.endswith("_prepacked") for name in names)
    assert not any(name.endswith("_weight_prepack") for name in names)  # folded away at build time
    calls = []
    relax.analysis.post_order_visit(packed["main"], lambda e: calls.append(e.args[0].name_hint)
                                    if isinstance(e, relax.Call) and e.op.name == "relax.call_tir" else None)
    assert calls and all(name.endswith("_prepacked") for name in calls)


@pytest.mark.slow
def test_measurement_checks_and_times_the_prepacked_compute(conv_task, backend):
    from tuner.measure import MeasureSettings, measure

    space = search_spaces.space_for(conv_task.func, backend.tvm_target())
    default = space.default_config()
    settings = MeasureSettings(repeat=2, min_repeat_ms=1)
    with tuner.LocalBuilder(backend, settings) as builder, tuner.LocalRunner(backend, settings) as runner:
        packed, plain = measure(builder, runner, conv_task, [default, default.replace(pack=False)])
    assert packed.ok and plain.ok, (packed, plain)  # both were checked against the unscheduled function
