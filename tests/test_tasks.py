import subprocess
import sys


import tuner
from benchmarks.models import conv_model, mlp_model, resnet18_model, small_cnn_model


def test_identical_subgraphs_are_one_task_with_weight(backend):
    parts = tuner.partition(tuner.load(resnet18_model(size=32, width=8, num_classes=10)), backend)
    keys = [task.workload_key for task in parts.tasks]
    assert len(keys) == len(set(keys))
    # Stage 1 has four identical 3x3 convs (+BN+ReLU, two with the residual add), so some task repeats.
    assert max(task.weight for task in parts.tasks) >= 2
    assert sum(task.weight for task in parts.tasks) > len(parts.tasks)
    assert all(task.flops > 0 for task in parts.tasks)


def test_conv_flops_and_fusion(backend):
    parts = tuner.partition(tuner.load(conv_model(in_channels=8, out_channels=16, size=10)), backend)
    assert len(parts.tasks) == 1
    task = parts.tasks[0]
    assert "conv2d" in task.name and "relu" in task.name  # bias and ReLU fused into the conv
    multiply_adds = 16 * 10 * 10 * 8 * 3 * 3
    assert 2 * multiply_adds <= task.flops <= 2 * multiply_adds + 4 * 16 * 10 * 10


def test_pure_reshapes_are_not_tasks(backend):
    parts = tuner.partition(tuner.load(small_cnn_model()), backend)
    assert not any(task.name.startswith("reshape") for task in parts.tasks)


KEYS = "import tuner, benchmarks.models as m; b = tuner.resolve_backend(); " \
       "print(sorted(t.workload_key for t in tuner.partition(tuner.load(m.mlp_model(batch=2, sizes=(8, 16, 4))), b).tasks))"


def test_workload_keys_are_stable_across_processes(backend):
    here = sorted(t.workload_key for t in tuner.partition(tuner.load(mlp_model(batch=2, sizes=(8, 16, 4))), backend).tasks)
    there = subprocess.run([sys.executable, "-c", KEYS], capture_output=True, text=True, check=True).stdout
    assert there.strip() == str(here)


def test_cli_tasks_table_and_json(tmp_path):
    import json

    import onnx

    from conftest import run_cli

    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(batch=2, sizes=(8, 16, 4)), str(path))
    table = run_cli("tasks", path)
    assert table.returncode == 0 and "workload key" in table.stdout and "tir-" in table.stdout
    data = json.loads(run_cli("tasks", path, "--json").stdout)
    assert data["model"] == "mlp" and len(data["tasks"]) >= 2
    assert {"name", "workload_key", "weight", "flops"} <= set(data["tasks"][0])


def test_erf_exp_and_softmax_become_vectorizable_fast_math(backend):
    """Before legalization: after it, an erf in a fused matmul epilogue is a scalar libm call per element."""
    from benchmarks.models import transformer_encoder_model

    model = tuner.load(transformer_encoder_model(seq_len=16, d_model=32, num_heads=2, d_ff=64))
    tasks = {task.name: task.func.script() for task in tuner.partition(model, backend).tasks}
    assert not [name for name, script in tasks.items() if "T.erf(" in script or "T.exp(" in script]
    assert [name for name in tasks if "fast_erf" in name] and "fast_softmax" in tasks
