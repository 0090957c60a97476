"""The ``layer_norm`` rewrite (``tuner.norm_rewrites``): a layer normalization written out op by op."""

import numpy as np
import onnxruntime as ort
import pytest

import tuner
from benchmarks.bert import _layer_norm
from benchmarks.models import GraphBuilder
from tuner.norm_rewrites import layer_norm


def _norm_model(axis: int = -1, reuse: bool = False):
    """ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add on x[2, 16, 32]; with ``reuse`` the
    output also adds the centered input (the Sub's output), used outside the pattern."""
    b = GraphBuilder(0)
    y = _layer_norm(b, b.op("Relu", ["x"]), 32, "ln", axis=axis)
    if reuse:
        y = b.op("Add", [y, next(node.output[0] for node in b.nodes if node.name == "ln.sub")])
    return b.make_model("norm", {"x": (2, 16, 32)}, y, (2, 16, 32))


def _outputs_match(proto, backend):
    model = tuner.load(proto)
    x = np.random.default_rng(0).standard_normal((2, 16, 32)).astype("float32") * 3 + 1
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = tuner.build(model, backend).runner().run(x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return [task.name for task in tuner.partition(model, backend).tasks]


def test_a_written_out_layer_norm_is_one_task_with_the_same_outputs(backend):
    proto = _norm_model()
    imported = tuner.load(proto).relax_module()
    rewritten = layer_norm()(imported).script()
    assert rewritten.count("R.nn.layer_norm") == 1
    assert not any(op in rewritten for op in ("R.mean", "R.power", "R.sqrt", "R.divide"))
    assert "R.nn.layer_norm" not in imported.script()  # the pass leaves its input alone
    tasks = _outputs_match(proto, backend)
    assert len(tasks) == 2 and any("layer_norm" in name for name in tasks)  # the Relu and the normalization
    assert not any("power" in name or "mean" in name for name in tasks)


@pytest.mark.parametrize("axis,reuse", [(1, False), (-1, True)])
def test_a_normalization_that_is_not_a_whole_layer_norm_is_left_alone(axis, reuse, backend):
    """Means over another axis than the last, or a step whose result is used elsewhere too."""
    proto = _norm_model(axis, reuse)
    rewritten = layer_norm()(tuner.load(proto).relax_module()).script()
    assert "R.nn.layer_norm" not in rewritten and "R.power" in rewritten
    assert not any("layer_norm" in name for name in _outputs_match(proto, backend))
