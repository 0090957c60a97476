"""Building from the cache, exporting, loading back, and comparing with ONNX Runtime."""

import json

import numpy as np
import onnx
import pytest

import tuner
from benchmarks.models import conv_model, gemm_model, mlp_model, resnet18_model, small_cnn_model
from conftest import run_cli
from tuner.bench import interleaved_s, onnxruntime_session, random_inputs
from tuner.records import MeasureResult, Record


def _reference(model, arrays, backend):
    session = onnxruntime_session(model, backend.num_cores)
    return session.run(None, {spec.name: a for spec, a in zip(model.inputs, arrays)})


def test_build_from_empty_cache_runs_and_matches(tmp_path, backend, cache):
    model = tuner.load(small_cnn_model(channels=7, size=13))
    built = tuner.build(model, backend, cache)
    assert built.coverage.tasks_tuned == 0 and built.coverage.tasks == len(built.schedules) > 1
    assert "0/" in built.coverage.line()
    arrays = random_inputs(model.inputs, seed=3)
    (got,) = built.runner().run(*arrays)
    (want,) = _reference(model, arrays, backend)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    path = built.export(tmp_path / "cnn.so")
    loaded = tuner.load_module(path)
    (again,) = loaded.run(x=arrays[0])
    np.testing.assert_allclose(again, got, rtol=1e-6, atol=1e-6)
    with pytest.raises(tuner.ShapeError, match="shape"):
        loaded.run(np.zeros((1, 3, 5, 5), np.float32))


def test_cached_record_is_used_only_for_its_backend(backend, cache):
    import search_spaces

    model = tuner.load(small_cnn_model(channels=8, size=12))
    task = tuner.partition(model, backend).tasks[0]
    config = search_spaces.space_for(task.func, backend.tvm_target()).default_config()
    other = tuner.resolve_backend({**backend.target, "num-cores": backend.num_cores + 1})
    cache.add(Record(other.key, task.workload_key, task.name, config.to_json(), MeasureResult((1e-5,))))
    assert tuner.build(model, backend, cache).coverage.tasks_tuned == 0

    cache.add(Record(backend.key, task.workload_key, task.name, config.to_json(), MeasureResult((1e-4,))))
    built = tuner.build(model, backend, cache)
    coverage = built.coverage
    assert coverage.tasks_tuned == 1 and 0 < coverage.flops_share_tuned < 1
    (schedule,) = [s for s in built.schedules if s.source == "cache"]
    assert schedule.workload_key == task.workload_key and schedule.cached_cost_s == pytest.approx(1e-4)


def test_unusable_cached_config_falls_back_to_default(backend, cache):
    model = tuner.load(gemm_model(batch=2, in_features=9, out_features=5))
    task = tuner.partition(model, backend).tasks[0]
    bogus = json.dumps({"rule": "no_such_rule", "knobs": {"a": 1}})
    cache.add(Record(backend.key, task.workload_key, task.name, bogus, MeasureResult((1e-6,))))
    built = tuner.build(model, backend, cache)
    assert built.schedules[0].source == "default" and "rejected" in built.schedules[0].note
    arrays = random_inputs(model.inputs)
    np.testing.assert_allclose(built.runner().run(*arrays)[0], _reference(model, arrays, backend)[0],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name, proto", [
    ("conv", conv_model(in_channels=16, out_channels=24, size=20, stride=2)),
    ("mlp", mlp_model(batch=4, sizes=(64, 96, 10))),
    ("resnet18", resnet18_model(size=64)),
])
def test_cli_tasks_build_bench(tmp_path, name, proto, cli):
    run = run_cli if name == "conv" else cli  # one model through the real entry point, the others in-process
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, str(path))
    db = tmp_path / "cache.sqlite"
    tasks = run("tasks", path, "--json")
    assert tasks.returncode == 0, tasks.stderr
    assert len(json.loads(tasks.stdout)["tasks"]) >= 1

    built = run("build", path, "--cache", db, "-o", tmp_path / f"{name}.so")
    assert built.returncode == 0, built.stderr
    assert "tasks had a tuning record" in built.stdout
    assert (tmp_path / f"{name}.so").is_file() and (tmp_path / f"{name}.so.json").is_file()

    report_path = tmp_path / "bench.json"
    bench = run("bench", path, "--cache", db, "--json", report_path, "--repeat", "3")
    assert bench.returncode == 0, bench.stderr
    report = json.loads(report_path.read_text())
    for key in ("model", "backend", "tuner_ms", "onnxruntime_ms", "speedup_vs_onnxruntime", "max_abs_err",
                "tasks", "tasks_tuned"):
        assert key in report
    assert report["tuner_ms"] > 0 and report["onnxruntime_ms"] > 0
    assert report["speedup_vs_onnxruntime"] == pytest.approx(report["onnxruntime_ms"] / report["tuner_ms"])
    assert report["max_abs_err"] < 1e-3 * max(1.0, _output_scale(proto))


def _output_scale(proto):
    from benchmarks.models import random_inputs as model_inputs
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return float(np.abs(session.run(None, model_inputs(proto))[0]).max())


@pytest.mark.slow
def test_profile_attributes_every_kernel_call_to_its_task(tmp_path, backend, cache):
    model = tuner.load(resnet18_model(size=32, width=8, num_classes=10))
    report = tuner.bench(model, backend, cache, repeat=1, profile=True)
    rows = {row.task_name: row for row in report.profile}
    built = tuner.build(model, backend, cache)
    for schedule in built.schedules:  # every task runs, as often per run as it occurs in the model
        row = rows[schedule.task_name]
        assert row.calls_per_run == schedule.weight and row.source == "default"
        assert row.ms_per_run > 0 and row.gflops == pytest.approx(
            schedule.flops * schedule.weight / (row.ms_per_run * 1e-3) / 1e9)
    assert set(rows) - {s.task_name for s in built.schedules} <= {"runtime (allocation, reshapes, checks)"}
    assert sum(row.share for row in report.profile) == pytest.approx(1.0)
    assert [row.ms_per_run for row in report.profile] == sorted((r.ms_per_run for r in report.profile), reverse=True)
    assert "where the time goes" in report.table() and report.to_json()["profile"][0]["task_name"]

    path = tmp_path / "r18.onnx"
    onnx.save(model.proto, str(path))
    cli = run_cli("bench", path, "--cache", tmp_path / "cli.sqlite", "--repeat", "1", "--profile")
    assert cli.returncode == 0, cli.stderr
    assert "where the time goes" in cli.stdout and "fused_conv2d" in cli.stdout


@pytest.mark.parametrize("plain_ms, runtime_ms", [(10.2, 0.2), (9.0, 0.0), (13.0, 1.0)])
def test_the_runtime_row_is_what_uninstrumented_runs_leave_beside_the_kernels(backend, monkeypatch, plain_ms,
                                                                               runtime_ms):
    # hundreds of runtime calls, each timed with the instrument's own microsecond, read as a millisecond of
    # work: the row is capped by what the whole run, timed without the instrument, leaves beside the kernels
    import tuner.profile as profiling

    model = tuner.load(small_cnn_model(channels=8, size=12))
    built = tuner.build(model, backend)
    kernels = [name for schedule in built.schedules for name in schedule.global_names]
    runs = 3
    times = {name: [10e-3 / len(kernels)] * runs for name in kernels}
    times.update({"vm.builtin.alloc_tensor": [2e-6] * 400 * runs, "vm.builtin.reshape": [1e-6] * 200 * runs})
    monkeypatch.setattr(profiling, "kernel_times_s", lambda *args: (times, [plain_ms * 1e-3] * runs))
    rows = {row.task_name: row for row in profiling.profile(built, random_inputs(model.inputs, seed=0), runs=runs)}
    assert rows[profiling.RUNTIME].ms_per_run == pytest.approx(runtime_ms, abs=1e-9)
    assert rows[profiling.RUNTIME].calls_per_run == 600
    assert sum(row.ms_per_run for name, row in rows.items() if name != profiling.RUNTIME) == pytest.approx(10.0)


def test_profile_sets_each_cached_task_beside_its_record(backend, cache):
    import search_spaces
    from tuner.profile import profile, table

    model = tuner.load(small_cnn_model(channels=8, size=12))
    task = max(tuner.partition(model, backend).tasks, key=lambda t: t.flops)
    config = search_spaces.space_for(task.func, backend.tvm_target()).default_config()
    cache.add(Record(backend.key, task.workload_key, task.name, config.to_json(), MeasureResult((2e-3, 4e-3))))
    built = tuner.build(model, backend, cache)
    rows = {row.task_name: row for row in profile(built, random_inputs(model.inputs, seed=0), runs=3)}
    row = rows.pop(task.name)
    assert row.source == "cache" and row.tuned_ms == pytest.approx(3.0)  # the record's mean, per call
    assert row.over_tuned == pytest.approx(row.ms_per_run / row.calls_per_run / 3.0)
    assert row.to_json()["over_tuned"] == row.over_tuned
    assert all(other.tuned_ms is None and other.over_tuned is None for other in rows.values())  # defaults, runtime
    text = table([row, *rows.values()])
    assert f"{row.over_tuned:.2f}x" in text
    assert (f"tasks with a record (1): {row.ms_per_run:.3f} ms per run here, {3.0 * row.calls_per_run:.3f} ms "
            f"as their records were measured alone") in text


def test_interleaved_timing_alternates_and_pauses_before_each_batch():
    import time

    calls = []

    def timer(name, seconds):
        def timed():
            calls.append((name, time.perf_counter()))
            return seconds
        return timed

    times = interleaved_s({"a": timer("a", 1.0), "b": timer("b", 2.0)}, repeat=3, settle_s=0.05)
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3}
    assert [name for name, _ in calls] == ["a", "b"] * 3
    gaps = [later - earlier for (_, earlier), (_, later) in zip(calls, calls[1:])]
    assert min(gaps) >= 0.05


@pytest.mark.slow
def test_build_says_when_the_cache_holds_records_timed_the_other_way(tmp_path, cli):
    import search_spaces

    proto = gemm_model(batch=4, in_features=64, out_features=48)
    path, db = tmp_path / "gemm.onnx", tmp_path / "cache.sqlite"
    onnx.save(proto, str(path))
    hot = tuner.resolve_backend(timing="hot")
    (task,) = tuner.partition(tuner.load(proto), hot).tasks
    config = search_spaces.space_for(task.func, hot.tvm_target()).default_config()
    with tuner.Cache(db) as cache:  # as a cache tuned before cold timing was the default
        cache.add(Record(hot.key, task.workload_key, task.name, config.to_json(), MeasureResult((1e-6,))))
    cold = cli("build", path, "--cache", db, "--timing", "cold", "-o", tmp_path / "cold.so")
    assert cold.returncode == 0, cold.stderr
    assert "0/1 tasks had a tuning record" in cold.stdout
    assert "holds 1 records of this machine timed hot: pass --timing hot" in cold.stdout
    warm = cli("build", path, "--cache", db, "--timing", "hot", "-o", tmp_path / "hot.so")
    assert warm.returncode == 0, warm.stderr
    assert "1/1 tasks had a tuning record" in warm.stdout and "--timing" not in warm.stdout
