"""The tuning loop: budget accounting, resumption, storage, with a fake and with real measurement."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import onnx
import pytest

import tuner
from benchmarks.models import mlp_model, small_cnn_model
from fakes import RANDOM, BatchRecorder, FakeRunner, KnobFakeRunner, fake
from tuner.tune import TuneSettings, tune


@pytest.fixture
def model():
    return tuner.load(small_cnn_model(channels=8, size=12))


def test_budget_counts_the_cache_and_nothing_is_measured_twice(model, backend, cache):
    runner = FakeRunner()
    first = tune(model, backend, cache, TuneSettings(trials=40, batch_size=8, **RANDOM), **fake(runner), progress=False)
    assert first.measured == 40 == cache.count()
    again = tune(model, backend, cache, TuneSettings(trials=40, batch_size=8, **RANDOM), **fake(runner), progress=False)
    assert again.measured == 0
    more = tune(model, backend, cache, TuneSettings(trials=70, batch_size=8, **RANDOM), **fake(runner), progress=False)
    assert more.measured == 30 and cache.count() == 70
    assert len(set(runner.measured)) == len(runner.measured) == 70
    assert all(task["trials"] >= 1 for task in more.tasks)


def test_search_improves_on_the_default(model, backend, cache):
    report = tune(model, backend, cache, TuneSettings(trials=60, batch_size=6, **RANDOM), **fake(FakeRunner()),
                  progress=False)
    for task in report.tasks:
        first = next(r for r in cache.records(backend.key, task["workload_key"]) if r.result.ok)
        assert task["best_ms"] <= first.result.mean_s * 1e3
    assert any(task["best_ms"] < next(r for r in cache.records(backend.key, task["workload_key"])
                                      if r.result.ok).result.mean_s * 1e3 for task in report.tasks)


@pytest.mark.parametrize("search", ["random", "model"])
def test_the_default_and_its_tied_configs_are_measured_first(search, backend, cache):
    import search_spaces

    model = tuner.load(mlp_model(batch=16, sizes=(32, 64)))
    runner = FakeRunner()
    tune(model, backend, cache, TuneSettings(trials=8, batch_size=8, search=search, scheduler="work-share"),
         **fake(runner), progress=False)
    (task,) = tuner.partition(model, backend).tasks
    expected = [c.to_json() for c in search_spaces.space_for(task.func, backend.tvm_target()).default_configs()]
    assert len(expected) >= 3  # how many blocks tie depends on the vector registers (3 with AVX-512 or AVX2)
    assert [config for _, config in runner.measured[:len(expected)]] == expected


def test_every_task_gets_a_record_and_build_uses_them(model, backend, cache):
    report = tune(model, backend, cache, TuneSettings(trials=24, batch_size=4, **RANDOM), **fake(FakeRunner()),
                  progress=False)
    assert all(task["best_ms"] is not None for task in report.tasks)
    built = tuner.build(model, backend, cache)
    assert built.coverage.tasks_tuned == built.coverage.tasks


def test_a_resumed_run_gives_the_measurer_each_tasks_best_in_the_cache(model, backend, cache, tmp_path):
    tune(model, backend, cache, TuneSettings(trials=24, batch_size=8, **RANDOM), **fake(FakeRunner()), progress=False)
    cached = {row["workload_key"]: row["best_s"] for row in cache.summary()}
    resumed = BatchRecorder()
    tune(model, backend, cache, TuneSettings(trials=48, batch_size=8, **RANDOM), **fake(resumed), progress=False)
    first = {}
    for key, best_s in resumed.best:
        first.setdefault(key, best_s)
    assert set(first) & set(cached)
    for key, best_s in first.items():
        assert best_s == pytest.approx(cached[key]) if key in cached else best_s is None
    fresh = BatchRecorder()
    with tuner.Cache(tmp_path / "empty.sqlite") as empty:
        tune(model, backend, empty, TuneSettings(trials=8, batch_size=8, **RANDOM), **fake(fresh), progress=False)
    assert fresh.best[0][1] is None  # nothing known yet


@pytest.mark.parametrize("search, batch_size, expected", [("random", None, 16), ("model", None, 8),
                                                          ("model", 12, 12)])
def test_each_search_measures_batches_of_its_own_size_unless_told(search, batch_size, expected, backend, cache):
    model = tuner.load(mlp_model(batch=16, sizes=(32, 64)))
    runner = BatchRecorder()
    options = {"population": 16} if search == "model" else {}
    settings = TuneSettings(trials=40, search=search, scheduler="work-share", batch_size=batch_size,
                            search_options=options)
    tune(model, backend, cache, settings, **fake(runner), progress=False)
    assert runner.batches == [expected] * (40 // expected) + ([40 % expected] if 40 % expected else [])


def test_bad_settings_are_rejected():
    with pytest.raises(tuner.TunerError, match="trial budget"):
        TuneSettings(trials=-1)
    with pytest.raises(tuner.TunerError, match="batch size"):
        TuneSettings(trials=1, batch_size=0)
    with pytest.raises(tuner.TunerError, match="time budget must be positive"):
        TuneSettings(time_budget_s=0)
    with pytest.raises(tuner.TunerError, match="unknown search strategy 'anneal'; choose one of random, model"):
        TuneSettings(trials=1, search="anneal")
    with pytest.raises(tuner.TunerError, match="unknown task scheduler 'greedy'; choose one of work-share, gradient"):
        TuneSettings(trials=1, scheduler="greedy")


@pytest.mark.slow
def test_real_tuning_survives_sigkill(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(batch=2, sizes=(32, 48, 8)), str(path))
    db = tmp_path / "cache.sqlite"
    args = [sys.executable, "-m", "tuner.cli", "tune", str(path), "--cache", str(db), "--trials", "24",
            "--batch-size", "4", "--search", "random", "--scheduler", "work-share", "--quiet"]
    victim = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    with tuner.Cache(db) as cache:
        while cache.count() < 8 and time.time() < deadline and victim.poll() is None:
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        stored = {(r.workload_key, r.config) for r in cache.records()}
    assert 8 <= len(stored) < 24

    report_path = tmp_path / "report.json"
    finished = subprocess.run(args + ["--json", str(report_path)], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(report_path.read_text())
    with tuner.Cache(db) as cache:
        records = list(cache.records())
    assert len(records) == 24 == len({(r.workload_key, r.config) for r in records})
    assert report["measured"] == 24 - len(stored)
    assert all(task["best_ms"] is not None for task in report["tasks"])


@pytest.mark.slow
def test_cli_build_timeout_reaches_the_measurer(tmp_path, cli):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(batch=2, sizes=(32, 48, 8)), str(path))
    db = tmp_path / "cache.sqlite"
    base = ["tune", path, "--cache", db, "--trials", "2", "--quiet"]
    rejected = cli(*base, "--build-timeout", "0")
    assert rejected.returncode == 2 and rejected.stderr.startswith("tuner: error: timeouts must be positive")
    assert "Traceback" not in rejected.stderr and not db.exists()

    # no compilation finishes in 10 ms: both candidates are recorded as timeouts, and the run ends normally
    hurried = cli(*base, "--build-timeout", "0.01")
    assert hurried.returncode == 0, hurried.stderr
    with tuner.Cache(db) as cache:
        records = list(cache.records())
    assert len(records) == 2 and all(r.result.error_kind == "timeout" for r in records)
    assert "build did not finish" in records[0].result.error_msg


@pytest.mark.slow
def test_cli_confirm_runs_and_timing_reach_the_measurer(tmp_path, cli):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(batch=2, sizes=(32, 48)), str(path))
    settings = tuner.MeasureSettings
    base = ["tune", path, "--trials", "3", "--quiet"]
    rejected = cli(*base, "--cache", tmp_path / "rejected.sqlite", "--confirm-runs", "-1")
    assert rejected.returncode == 2 and rejected.stderr.startswith("tuner: error: confirm_runs")
    costs, keys = {}, {}
    for runs, timing in (("0", "hot"), ("2", "cold")):
        db = tmp_path / f"confirm{runs}.sqlite"
        tuned = cli(*base, "--cache", db, "--confirm-runs", runs, "--timing", timing)
        assert tuned.returncode == 0, tuned.stderr
        with tuner.Cache(db) as cache:
            costs[runs] = [len(r.result.costs_s) for r in cache.records() if r.result.ok]
            keys[timing] = {r.backend_key for r in cache.records()}
    assert costs["0"] and set(costs["0"]) == {settings.repeat}  # hot: repeats of at least min_repeat_ms
    # cold: single flushed runs, as many as fit (up to the cap, for a kernel of microseconds); the task's
    # first timing is its best so far: run twice more
    assert costs["2"][0] == 3 * settings.max_flushed_runs
    assert keys == {timing: {tuner.resolve_backend(timing=timing).key} for timing in ("hot", "cold")}


class SlowFakeRunner(FakeRunner):
    def run(self, task, artifacts, best_s=None):
        time.sleep(0.3)
        return super().run(task, artifacts, best_s)


def test_time_budget_stops_tuning(model, backend, cache):
    settings = TuneSettings(trials=1000, batch_size=4, time_budget_s=0.5, **RANDOM)
    report = tune(model, backend, cache, settings, **fake(SlowFakeRunner()), progress=False)
    assert 4 <= report.measured <= 12 and cache.count() == report.measured


def test_gradient_scheduler_tunes_every_task(model, backend, cache):
    settings = TuneSettings(trials=48, batch_size=4, search="random", scheduler="gradient")
    report = tune(model, backend, cache, settings, **fake(FakeRunner()), progress=False)
    assert report.measured <= 48
    assert all(task["best_ms"] is not None for task in report.tasks)


def test_model_guided_search_trains_stores_features_and_transfers(backend, cache):
    first = tuner.load(small_cnn_model(channels=8, size=12))
    runner = KnobFakeRunner()
    settings = TuneSettings(trials=48, batch_size=8, search="model", scheduler="work-share",
                            search_options={"population": 16})
    report = tune(first, backend, cache, settings, **fake(runner), progress=False)
    assert report.measured == 48 and len(set(runner.measured)) == 48
    assert report.search["strategy"] == "model" and report.search["model_trained"]
    assert report.search["transferred_rows"] == 0
    import costmodel

    first_tasks = report.tasks
    task = report.tasks[0]
    assert len(cache.features(backend.key, task["workload_key"], str(costmodel.FEATURE_VERSION))) > 0

    second = tuner.load(mlp_model(batch=2, sizes=(32, 48, 8)))
    report = tune(second, backend, cache, dataclasses.replace(settings, trials=16), **fake(runner), progress=False)
    assert report.search["transferred_rows"] >= 40  # the first model's records, from stored features
    assert report.search["transferred_configs"] == len(first_tasks)  # each task's best config
    assert report.search["model_trained"]


def test_report_curve_follows_the_estimated_latency(model, backend, cache):
    report = tune(model, backend, cache, TuneSettings(trials=48, batch_size=8, **RANDOM), **fake(FakeRunner()),
                  progress=False)
    trials = [point[0] for point in report.curve]
    estimates = [point[1] for point in report.curve if point[1] is not None]
    assert trials[0] == 0 and trials[-1] == 48 and trials == sorted(trials)
    assert report.curve[0][1] is None and estimates  # unknown until every task has a measurement
    assert all(later <= earlier for earlier, later in zip(estimates, estimates[1:]))
    assert estimates[-1] == pytest.approx(report.estimated_ms)
    assert report.to_json()["curve"][-1] == [48, pytest.approx(report.estimated_ms)]
    resumed = tune(model, backend, cache, TuneSettings(trials=56, batch_size=8, **RANDOM), **fake(FakeRunner()),
                   progress=False)
    assert resumed.curve[0] == (48, pytest.approx(report.estimated_ms)) and resumed.curve[-1][0] == 56


def test_format_seconds_keeps_tiny_kernels_readable():
    from tuner.progress import format_seconds

    assert format_seconds(3.92e-8) == "0.0392 us" and format_seconds(5.38e-5) == "53.8 us"
    assert format_seconds(2.5e-3) == "2.500 ms"
