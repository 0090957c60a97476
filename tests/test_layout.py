"""The blocked convolution layout (``tuner.layout``): where the graph converts, and that nothing changes."""

import json

import numpy as np
import onnxruntime as ort
import pytest

import tuner
from tests.test_rewrites import densenet_shaped, resnet50_shaped
from tuner.backend import resolve_backend
from tuner.errors import TargetError
from tuner.layout import blocked_layout
from tuner.rewrites import rewrite


def _conversions(module) -> list:
    """The layout_transform calls of ``main`` on activations (not on the weights, 6-D when blocked, nor on
    the per-channel biases of one pixel: both are folded at build time)."""
    return [call for call in _calls(module, "relax.layout_transform")
            if call.ty.ndim != 6 and [int(d) for d in list(call.args[0].ty.shape)[2:4]] != [1, 1]]


@pytest.mark.parametrize("make", [resnet50_shaped, lambda: densenet_shaped(channels=8, growth=8)],
                         ids=["resnet", "densenet"])
def test_activations_stay_blocked_from_one_convolution_to_the_next(make):
    """Residual adds, ReLUs and concats follow the blocked layout: the image is converted once for the
    3-channel stem (which takes its channels as one block) and the result once back at the output."""
    module = rewrite(tuner.load(make()).relax_module())
    blocked = blocked_layout(8)(module)
    convs = [call.attrs.data_layout for call in _calls(blocked, "relax.nn.conv2d")]
    assert convs[0] == "NCHW3c" and convs[1:] and set(convs[1:]) == {"NCHW8c"}
    assert len(_conversions(blocked)) == 2
    assert not _conversions(module) and not _calls(blocked_layout(0)(module), "relax.layout_transform")


def _calls(module, op_name: str) -> list:
    from tvm import relax

    found = []
    relax.analysis.post_order_visit(
        module["main"], lambda e: found.append(e) if isinstance(e, relax.Call) and getattr(e.op, "name", None) == op_name
        else None)
    return found


@pytest.mark.parametrize("block", [8, 16])
def test_blocked_builds_match_onnxruntime(block):
    """Block 16 leaves the ResNet's 8-channel convolutions in NCHW: converted between, still exact."""
    proto = resnet50_shaped()
    model = tuner.load(proto)
    backend = resolve_backend("host", conv_block=block)
    names = [task.name for task in tuner.partition(model, backend).tasks]
    assert any("conv2d_NCHWc" in name for name in names)
    feeds = {"x": np.random.default_rng(0).standard_normal(model.inputs[0].shape).astype(np.float32)}
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = tuner.build(model, backend).runner().run(**feeds)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-4 * float(np.abs(expected[0]).max()))


def test_the_command_line_takes_the_layout_and_rejects_an_unknown_block(tmp_path, cli, capsys):
    path = tmp_path / "resnet.onnx"
    path.write_bytes(resnet50_shaped().SerializeToString())
    listed = cli("tasks", path, "--conv-layout", "nchw8c", "--json")
    assert listed.returncode == 0, listed.stderr
    assert any("conv2d_NCHWc" in task["name"] for task in json.loads(listed.stdout)["tasks"])
    with pytest.raises(TargetError, match="convolution block 12 is not one of 0, 8, 16"):
        resolve_backend("host", conv_block=12)
    with pytest.raises(SystemExit):
        cli("tasks", path, "--conv-layout", "nhwc")
    assert "invalid choice: 'nhwc'" in capsys.readouterr().err
