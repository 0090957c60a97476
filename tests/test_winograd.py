"""Winograd 3x3 convolutions (``tuner.winograd``) and the rule that schedules their transforms."""

import numpy as np
import onnxruntime as ort
import pytest
import tvm

import search_spaces as ss
import tuner
from benchmarks.models import GraphBuilder, conv_model
from tests.test_search_spaces import assert_matches
from tuner.backend import resolve_backend
from tuner.tasks import partition


def winograd_net(batch: int, size: int) -> "onnx.ModelProto":  # noqa: F821
    """Two 3x3 convolutions in a row (ReLU between, the residual after), one on a concat, and a 1x1
    convolution reading the last one as a row of pixels."""
    b = GraphBuilder(0)
    h = b.op("Relu", [b.conv("x", 64, 64, 3, name="a")])
    h = b.op("Relu", [b.op("Add", [b.conv(h, 64, 64, 3, name="b"), "x"])])
    h = b.conv(b.op("Concat", [h, "x"], axis=1), 128, 64, 3, name="c")
    y = b.conv(h, 64, 32, 1, name="d")
    return b.make_model("winograd_net", {"x": (batch, 64, size, size)}, y, (batch, 32, size, size))


@pytest.mark.parametrize("batch,size", [(1, 12), (2, 7)])
def test_winograd_builds_match_onnxruntime(batch, size):
    proto = winograd_net(batch, size)
    model = tuner.load(proto)
    backend = resolve_backend("host")
    calls = {}  # (kind, rule) -> calls, over the tasks (identical functions are one task)
    for task in partition(model, backend).tasks:
        kind = next((k for k in ("input", "gemm", "output") if f"winograd_{k}" in task.name), "other")
        key = (kind, ss.space_for(task.func, backend.tvm_target()).rule)
        calls[key] = calls.get(key, 0) + task.weight
    # three convolutions of three functions each, the input transforms fused with nothing before them;
    # the 1x1 convolution direct
    assert calls == {("input", "winograd"): 3, ("gemm", "tiled_reduction"): 3, ("output", "winograd"): 3,
                     ("other", "tiled_reduction"): 1}
    assert all(task.name.startswith("winograd_input") for task in partition(model, backend).tasks
               if "winograd_input" in task.name)
    x = np.random.default_rng(0).standard_normal((batch, 64, size, size)).astype("float32")
    got = tuner.build(model, backend).runner().run(x)[0]
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def _first_conv(proto):
    from tuner.rewrites import rewrite

    module = rewrite(tuner.load(proto).relax_module())
    found = []
    tvm.relax.analysis.post_order_visit(module["main"], lambda e: found.append(e) if isinstance(
        e, tvm.relax.Call) and getattr(e.op, "name", None) == "relax.nn.conv2d" else None)
    return found[0]


@pytest.mark.parametrize("settings,expected", [
    ({}, True),  # 64 -> 64 channels: C*K/(C+K) = 32
    ({"in_channels": 128, "out_channels": 32}, False),  # 25.6: the transforms cost more than they save
    ({"stride": 2}, False),
    ({"kernel": 1}, False),
    ({"kernel": 5}, False),
    ({"size": 7}, False),  # 16 tiles: the transformed weights cost more to read than the multiplies saved
    ({"size": 7, "batch": 2}, True),
])
def test_which_convolutions_are_winograd(settings, expected):
    from tuner.winograd import is_winograd

    call = _first_conv(conv_model(**{"size": 14, **settings}))
    with tvm.target.Target({"kind": "llvm"}):
        assert is_winograd(call) == expected
    with tvm.target.Target({"kind": "cuda", "arch": "sm_80"}):
        assert not is_winograd(call)  # not measured on a GPU


@pytest.mark.parametrize("batch,size,lanes", [(1, 12, (1, 2, 3, 6)), (2, 7, (1, 2, 4))])
def test_every_lanes_choice_of_the_transforms_computes_the_same(batch, size, lanes):
    backend = resolve_backend("host")
    target = backend.tvm_target()
    tasks = [task for task in partition(tuner.load(winograd_net(batch, size)), backend).tasks
             if ss.space_for(task.func, target).rule == "winograd"]
    assert len(tasks) == 5  # two input transforms, the two 64-channel convolutions' one task; three outputs
    for task in tasks:
        space = ss.space_for(task.func, target)
        assert space.knobs["lanes"] == ((1,) if size % 2 and "output" in task.name else lanes)  # tiles per row
        for value in space.knobs["lanes"]:
            assert_matches(task.func, space.apply(ss.Config.from_dict("winograd", {"lanes": value})).mod)
        default = space.apply(space.default_config()).mod["main"].script()
        assert ("T.vectorized" in default) == (max(space.knobs["lanes"]) > 1) and "T.unroll" in default
