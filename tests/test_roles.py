"""The roles' interfaces: custom builder, runner, strategy and cost model passed to ``tune``; the
factories; one lowering; one error hierarchy; the default budget and the progress bar."""

import json
import os
import re

import numpy as np
import pytest

import costmodel
import search_spaces
import tuner
from benchmarks.models import mlp_model, small_cnn_model
from conftest import run_cli
from fakes import RANDOM, KnobFakeRunner, fake
from tuner import budget
from tuner.progress import Progress, format_duration
from tuner.records import MeasureResult
from tuner.tune import TuneSettings, tune


class CountingRunner:
    """A runner that times nothing: it checks that each artifact is a built library and returns
    costs from a formula of the config's knobs."""

    def __init__(self):
        self.measured = []
        self.libraries = 0

    def run(self, task, artifacts, best_s=None):
        results = []
        for artifact in artifacts:
            self.libraries += int(artifact.path is not None and os.path.getsize(artifact.path) > 0)
            self.measured.append(artifact.config.to_json())
            results.append(KnobFakeRunner().result(artifact.config))
        return results

    def close(self):
        pass


class LeastSquares:
    """A linear cost model with the scikit-learn contract: throughput ~ X @ w."""

    def __init__(self):
        self.fits, self.predictions = [], 0

    def fit(self, X, y, groups):
        self.fits.append((X.shape, sorted(set(groups))))
        self.coef_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]
        return self

    def predict(self, X):
        self.predictions += len(X)
        return np.c_[X, np.ones(len(X))] @ self.coef_

    def save(self, path):
        with open(path, "w") as stream:
            json.dump({"coef": self.coef_.tolist()}, stream)


class BestOfSamples(tuner.SearchStrategy):
    """Proposes the best-scored of random samples once the model is trained, random samples before."""

    name = "best-of-samples"
    batch_size = 4

    def __init__(self):
        self.proposed = []

    def training(self):
        return tuner.TrainingSettings(min_rows=8)

    def propose(self, state, count):
        rng, model = self.context.rng, self.context.model
        offer = tuner.Offer(state, count)
        samples = [state.space.sample(rng) for _ in range(8 * count)]
        ranked = sorted(model.score(state, samples), key=lambda item: -item[0]) if model.trained else []
        for config in [config for _, config in ranked] + samples:
            offer(config)
        self.proposed += [c.to_json() for c in offer.configs]
        return offer.configs


@pytest.mark.slow
def test_a_custom_runner_strategy_and_cost_model_tune_a_model(backend, cache):
    model = tuner.load(mlp_model(batch=2, sizes=(32, 48, 8)))
    runner, strategy, cost_model = CountingRunner(), BestOfSamples(), LeastSquares()
    report = tune(model, backend, cache, TuneSettings(trials=24, scheduler="work-share"), runner=runner,
                  strategy=strategy, cost_model=cost_model, progress=False)
    assert report.measured == 24 == cache.count() and runner.measured == strategy.proposed
    assert runner.libraries == 24  # the default builder compiled every proposal
    keys = sorted(task["workload_key"] for task in report.tasks)
    assert cost_model.fits and cost_model.fits[-1][1] == keys  # trained on every task's rows
    assert cost_model.predictions > 0 and report.search["strategy"] == "best-of-samples"
    assert report.search["cost_model"] == "LeastSquares" and report.search["model_trained"]
    stored = {r.config: r.result.mean_s for r in cache.records()}
    assert all(stored[config] == pytest.approx(KnobFakeRunner().result(search_spaces.Config.from_json(config))
                                               .mean_s) for config in runner.measured)


def _model_guided_proposals(model, backend, tmp_path, seed):
    runner = KnobFakeRunner()
    settings = TuneSettings(trials=40, seed=seed, search="model", scheduler="gradient",
                            search_options={"population": 16, "min_rows": 8})
    with tuner.create_database("memory") as database:
        tune(model, backend, database, settings, **fake(runner), progress=False)
    return runner.measured


def test_the_same_seed_gives_the_same_proposals(backend, tmp_path):
    model = tuner.load(mlp_model(batch=2, sizes=(32, 48, 8)))
    first = _model_guided_proposals(model, backend, tmp_path, seed=0)
    assert len(first) == 40
    assert _model_guided_proposals(model, backend, tmp_path, seed=0) == first
    assert _model_guided_proposals(model, backend, tmp_path, seed=1) != first


def test_factories_list_the_kinds_and_options():
    for create, kinds in ((tuner.create_strategy, "random, model"), (costmodel.create_cost_model, "xgb, random")):
        with pytest.raises(tuner.TunerError, match=f"choose one of {kinds}$"):
            create("anneal")
    for create, kinds in ((tuner.create_builder, "local"), (tuner.create_runner, "local, rpc")):
        with pytest.raises(tuner.SettingsError, match=f"choose one of {kinds}$"):
            create("remote", backend=None)
    with pytest.raises(tuner.SettingsError, match="needs the tracker and the device key: --rpc HOST:PORT"):
        tuner.create_runner("rpc", backend=None)
    with pytest.raises(tuner.SettingsError, match="choose one of sqlite, memory$"):
        tuner.create_database("postgres")
    with pytest.raises(tuner.SettingsError, match="unknown option.* populaton for model search; the options are "
                                                  "batch_size, population, "):
        tuner.create_strategy("model", populaton=64)
    with pytest.raises(tuner.SettingsError, match="option population='many' is not a int"):
        tuner.create_strategy("model", population="many")
    search = tuner.create_strategy("model", population="256", explore_share="0.25")
    assert (search.settings.population, search.settings.explore_share) == (256, 0.25)
    assert tuner.create_strategy("random", mutate_share="1").settings.mutate_share == 1.0


def test_every_error_class_is_a_tuner_error():
    import importlib
    import inspect
    import pkgutil

    classes = []
    for package in (tuner, search_spaces, costmodel):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            classes += [c for _, c in inspect.getmembers(module, inspect.isclass)
                        if issubclass(c, Exception) and c.__module__ == module.__name__]
    assert search_spaces.InvalidConfigError in classes and costmodel.CostModelError in classes
    assert [c for c in classes if not issubclass(c, tuner.TunerError)] == []
    assert not issubclass(search_spaces.InvalidConfigError, ValueError)  # caught by name, not as ValueError


def test_one_lowering_serves_measuring_features_and_build(backend):
    from tuner.build import schedule_task
    from tuner.features import _timed_modules
    from tuner.records import Record

    import tvm_ffi

    task = next(t for t in tuner.partition(tuner.load(small_cnn_model(channels=8, size=12)), backend).tasks
                if "conv2d" in t.name)
    target = backend.tvm_target()
    space = search_spaces.space_for(task.func, target)
    config = next(c for c in (space.sample(np.random.default_rng(seed)) for seed in range(20))
                  if c.get("pack") and c != space.default_config())
    lowered = tuner.lower(task.func, config, target)
    record = Record(backend.key, task.workload_key, task.name, config.to_json(), MeasureResult((1e-3,)))
    built, info = schedule_task(task, target, record)
    assert info.source == "cache" and tvm_ffi.structural_equal(built, lowered.func)
    (timed,) = _timed_modules(space, task.func, [config], target)
    split = lowered.split()
    assert split.prepack is not None and tvm_ffi.structural_equal(timed["main"], split.compute)
    assert tuner.lower(task.func, None, target).config == space.default_config()
    with pytest.raises(search_spaces.InvalidConfigError):
        tuner.lower(task.func, search_spaces.Config.from_dict(space.rule, {"nonsense": 1}), target)


def test_the_default_budget_is_time_that_scales_with_the_model(backend, cache, capsys, monkeypatch):
    assert budget.Budget.of(None, None, 7).seconds == 7 * budget.DEFAULT_S_PER_TASK
    assert budget.Budget.of(None, None, 400).seconds == budget.DEFAULT_MAX_S == 1200
    assert budget.Budget.of(100, None, 7) == budget.Budget(100, None)
    monkeypatch.setattr(budget, "DEFAULT_S_PER_TASK", 0.4)
    model = tuner.load(small_cnn_model(channels=8, size=12))
    report = tune(model, backend, cache, TuneSettings(**RANDOM), **fake(KnobFakeRunner()))
    first = capsys.readouterr().err.splitlines()[0]
    seconds = format_duration(0.4 * len(report.tasks))
    assert first.startswith(f"tuning {model.name} ({len(report.tasks)} tasks) on {backend.key} for {seconds} "
                            f"(the default: 0s a task, at most 20m00s; --time or --trials sets it)")
    assert first.endswith("random search, work-share scheduler")
    assert report.budget.startswith(f"for {seconds} (the default") and report.measured > 0


def test_the_bar_counts_what_the_budget_is_in():
    assert Progress(seconds=420).line(184, 65, "conv").startswith("[###.....................] 1m05s/7m00s 184 trials")
    assert Progress(trials=2000).line(500, 65) == "[######..................] 500/2000 trials 65s"
    both = Progress(trials=200, seconds=60).line(150, 30)  # the bar shows whichever is further
    assert both.startswith("[##################......] 30s/1m00s 150/200 trials")


def test_a_memory_database_keeps_nothing_on_disk(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tuner.load(mlp_model(batch=2, sizes=(32, 48)))
    with tuner.create_database("memory") as database:
        report = tune(model, backend, database, TuneSettings(trials=8, **RANDOM), **fake(KnobFakeRunner()),
                      progress=False)
        assert database.count() == report.measured == 8
    assert os.listdir(tmp_path) == []


def test_a_corrupt_or_foreign_cost_model_file_is_one_line_and_exit_2(tmp_path, capsys):
    from tuner.cli import main

    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model(batch=2, sizes=(32, 48)).SerializeToString())
    broken = tmp_path / "model.json"
    broken.write_text("{not json")
    foreign = tmp_path / "other.json"
    foreign.write_text(json.dumps({"kind": "sklearn.Pipeline"}))
    cases = {broken: "not a readable cost model file", foreign: "not a saved cost model",
             tmp_path / "missing.json": "no such cost model file"}
    for model_file, message in cases.items():
        assert main(["tune", str(path), "--cache", str(tmp_path / "c.sqlite"), "--load-cost-model",
                     str(model_file)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith(f"tuner: error: {model_file}: {message}"), err
    assert not (tmp_path / "c.sqlite").exists() and broken.read_text() == "{not json"  # nothing written
    assert main(["tune", str(path), "--search-option", "populaton=3"]) == 2
    assert "the options are batch_size, population" in capsys.readouterr().err
    assert main(["tune", str(path), "--search", "random", "--save-cost-model", str(tmp_path / "m.json")]) == 2
    assert "need a search that uses a cost model" in capsys.readouterr().err
    assert main(["tune", str(path), "--save-cost-model", str(tmp_path / "m.pkl")]) == 2
    assert "an xgb cost model file ends in .json or .ubj" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_tunes_for_the_time_it_is_given_and_saves_the_cost_model(tmp_path, capsys):
    from tuner.cli import main

    path = tmp_path / "mlp.onnx"
    path.write_bytes(mlp_model(batch=2, sizes=(32, 48, 8)).SerializeToString())
    saved, db = tmp_path / "costmodel.json", tmp_path / "c.sqlite"
    result = run_cli("tune", path, "--cache", db, "--time", "10s", "--search-option", "min_rows=4",
                     "--save-cost-model", saved, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert re.match(r"tuning mlp \(\d tasks\) on llvm-\S+ for 10s, model search, gradient scheduler$", lines[0])
    assert len(lines) > 1 and all(re.match(r"\[[#.]+\] \d+s/10s \d+ trials ", line) for line in lines[1:])
    assert f"saved the cost model to {saved}" in result.stdout
    loaded = costmodel.load_cost_model(saved)
    assert isinstance(loaded, costmodel.XGBCostModel) and loaded.backend_.startswith("llvm-")
    with tuner.Cache(db) as cache:
        trials = cache.count()
    # too few rows to train on (min_rows): the model ranks candidates only because it was loaded
    assert main(["tune", str(path), "--cache", str(db), "--trials", str(trials + 4), "--search-option",
                 "min_rows=100000", "--load-cost-model", str(saved), "--json", str(tmp_path / "r.json"),
                 "--quiet"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["search"]["model_trained"] and report["search"]["scored_candidates"] > 0
    assert report["measured"] == 4
