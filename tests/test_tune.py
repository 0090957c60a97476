"""The tuning loop: budget accounting, resumption, storage, with a fake and with real measurement."""

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import onnx
import pytest

import tuner
from benchmarks.models import mlp_model, small_cnn_model
from conftest import run_cli
from tuner.records import MeasureResult
from tuner.tune import TuneSettings, tune


class FakeMeasurer:
    """Deterministic costs from the config's text; every 7th config fails to build."""

    def __init__(self):
        self.measured = []

    def measure(self, task, configs, best_s=None):
        results = []
        for config in configs:
            self.measured.append((task.workload_key, config.to_json()))
            digest = int(hashlib.sha256(config.to_json().encode()).hexdigest(), 16)
            if digest % 7 == 0:
                results.append(MeasureResult.error("build", "fake failure"))
            else:
                results.append(MeasureResult((1e-4 * (1 + digest % 1000),)))
        return results


class FlatModel:
    """A trained cost model's stand-in that scores every candidate alike."""

    def predict(self, X):
        return [0.0] * len(X)


@pytest.fixture
def model():
    return tuner.load(small_cnn_model(channels=8, size=12))


def _conv_state(model, backend):
    """A fresh TaskState of the model's conv2d task."""
    import search_spaces
    from tuner.tune import TaskState

    task = next(t for t in tuner.partition(model, backend).tasks if "conv2d" in t.name)
    return TaskState(task, search_spaces.space_for(task.func, backend.tvm_target()))


def test_budget_counts_the_cache_and_nothing_is_measured_twice(model, backend, cache):
    fake = FakeMeasurer()
    first = tune(model, backend, cache, TuneSettings(trials=40, batch_size=8), measurer=fake, progress=False)
    assert first.measured == 40 == cache.count()
    again = tune(model, backend, cache, TuneSettings(trials=40, batch_size=8), measurer=fake, progress=False)
    assert again.measured == 0
    more = tune(model, backend, cache, TuneSettings(trials=70, batch_size=8), measurer=fake, progress=False)
    assert more.measured == 30 and cache.count() == 70
    assert len(set(fake.measured)) == len(fake.measured) == 70
    assert all(task["trials"] >= 1 for task in more.tasks)


def test_search_improves_on_the_default(model, backend, cache):
    fake = FakeMeasurer()
    report = tune(model, backend, cache, TuneSettings(trials=60, batch_size=6), measurer=fake, progress=False)
    for task in report.tasks:
        first = next(r for r in cache.records(backend.key, task["workload_key"]) if r.result.ok)
        assert task["best_ms"] <= first.result.mean_s * 1e3
    assert any(task["best_ms"] < next(r for r in cache.records(backend.key, task["workload_key"])
                                      if r.result.ok).result.mean_s * 1e3 for task in report.tasks)


@pytest.mark.parametrize("search", ["random", "model"])
def test_the_default_and_its_tied_configs_are_measured_first(search, backend, cache):
    import search_spaces

    model = tuner.load(mlp_model(batch=16, sizes=(32, 64)))
    fake = FakeMeasurer()
    tune(model, backend, cache, TuneSettings(trials=8, batch_size=8, search=search), measurer=fake, progress=False)
    (task,) = tuner.partition(model, backend).tasks
    expected = [c.to_json() for c in search_spaces.space_for(task.func, backend.tvm_target()).default_configs()]
    assert len(expected) >= 3  # how many blocks tie depends on the vector registers (3 with AVX-512, 4 AVX2)
    assert [config for _, config in fake.measured[:len(expected)]] == expected


def test_every_task_gets_a_record_and_build_uses_them(model, backend, cache):
    report = tune(model, backend, cache, TuneSettings(trials=24, batch_size=4), measurer=FakeMeasurer(),
                  progress=False)
    assert all(task["best_ms"] is not None for task in report.tasks)
    built = tuner.build(model, backend, cache)
    assert built.coverage.tasks_tuned == built.coverage.tasks


class BatchRecorder(FakeMeasurer):
    def __init__(self):
        super().__init__()
        self.batches = []  # the size of each batch
        self.best = []  # (workload key, best_s given) of each batch

    def measure(self, task, configs, best_s=None):
        self.batches.append(len(configs))
        self.best.append((task.workload_key, best_s))
        return super().measure(task, configs, best_s)


def test_a_resumed_run_gives_the_measurer_each_tasks_best_in_the_cache(model, backend, cache, tmp_path):
    tune(model, backend, cache, TuneSettings(trials=24, batch_size=8), measurer=FakeMeasurer(), progress=False)
    cached = {row["workload_key"]: row["best_s"] for row in cache.summary()}
    resumed = BatchRecorder()
    tune(model, backend, cache, TuneSettings(trials=48, batch_size=8), measurer=resumed, progress=False)
    first = {}
    for key, best_s in resumed.best:
        first.setdefault(key, best_s)
    assert set(first) & set(cached)
    for key, best_s in first.items():
        assert best_s == pytest.approx(cached[key]) if key in cached else best_s is None
    fresh = BatchRecorder()
    with tuner.Cache(tmp_path / "empty.sqlite") as empty:
        tune(model, backend, empty, TuneSettings(trials=8, batch_size=8), measurer=fresh, progress=False)
    assert fresh.best[0][1] is None  # nothing known yet


@pytest.mark.parametrize("search, batch_size, expected", [("random", None, 16), ("model", None, 8),
                                                          ("model", 12, 12)])
def test_each_search_measures_batches_of_its_own_size_unless_told(search, batch_size, expected, backend, cache):
    model = tuner.load(mlp_model(batch=16, sizes=(32, 64)))
    fake = BatchRecorder()
    settings = TuneSettings(trials=40, search=search, batch_size=batch_size, population=16)
    tune(model, backend, cache, settings, measurer=fake, progress=False)
    assert fake.batches == [expected] * (40 // expected) + ([40 % expected] if 40 % expected else [])


def test_bad_settings_are_rejected():
    with pytest.raises(tuner.TunerError, match="trial budget"):
        TuneSettings(trials=-1)
    with pytest.raises(tuner.TunerError, match="batch size"):
        TuneSettings(trials=1, batch_size=0)
    with pytest.raises(tuner.TunerError, match="unknown search strategy 'anneal'; choose one of random, model"):
        TuneSettings(trials=1, search="anneal")
    with pytest.raises(tuner.TunerError, match="unknown task scheduler 'greedy'; choose one of work-share, gradient"):
        TuneSettings(trials=1, scheduler="greedy")


@pytest.mark.slow
def test_real_tuning_survives_sigkill(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(batch=2, sizes=(32, 48, 8)), str(path))
    db = tmp_path / "cache.sqlite"
    args = [sys.executable, "-m", "tuner.cli", "tune", str(path), "--cache", str(db), "--trials", "40",
            "--batch-size", "4", "--quiet"]
    victim = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    with tuner.Cache(db) as cache:
        while cache.count() < 8 and time.time() < deadline and victim.poll() is None:
            time.sleep(0.2)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        stored = {(r.workload_key, r.config) for r in cache.records()}
    assert 8 <= len(stored) < 40

    report_path = tmp_path / "report.json"
    finished = subprocess.run(args + ["--json", str(report_path)], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(report_path.read_text())
    with tuner.Cache(db) as cache:
        records = list(cache.records())
    assert len(records) == 40 == len({(r.workload_key, r.config) for r in records})
    assert report["measured"] == 40 - len(stored)
    assert all(task["best_ms"] is not None for task in report["tasks"])


@pytest.mark.slow
def test_cli_build_timeout_reaches_the_measurer(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(batch=2, sizes=(32, 48, 8)), str(path))
    db = tmp_path / "cache.sqlite"
    base = ["tune", path, "--cache", db, "--trials", "2", "--quiet"]
    rejected = run_cli(*base, "--build-timeout", "0", timeout=300)
    assert rejected.returncode == 2 and rejected.stderr.startswith("tuner: error: timeouts must be positive")
    assert "Traceback" not in rejected.stderr and not db.exists()

    # no compilation finishes in 10 ms: both candidates are recorded as timeouts, and the run ends normally
    hurried = run_cli(*base, "--build-timeout", "0.01", timeout=300)
    assert hurried.returncode == 0, hurried.stderr
    with tuner.Cache(db) as cache:
        records = list(cache.records())
    assert len(records) == 2 and all(r.result.error_kind == "timeout" for r in records)
    assert "build did not finish" in records[0].result.error_msg


@pytest.mark.slow
def test_cli_confirm_runs_and_timing_reach_the_measurer(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_model(batch=2, sizes=(32, 48)), str(path))
    settings = tuner.MeasureSettings
    base = ["tune", path, "--trials", "3", "--quiet"]
    rejected = run_cli(*base, "--cache", tmp_path / "rejected.sqlite", "--confirm-runs", "-1", timeout=300)
    assert rejected.returncode == 2 and rejected.stderr.startswith("tuner: error: confirm_runs")
    costs, keys = {}, {}
    for runs, timing in (("0", "hot"), ("2", "cold")):
        db = tmp_path / f"confirm{runs}.sqlite"
        tuned = run_cli(*base, "--cache", db, "--confirm-runs", runs, "--timing", timing, timeout=300)
        assert tuned.returncode == 0, tuned.stderr
        with tuner.Cache(db) as cache:
            costs[runs] = [len(r.result.costs_s) for r in cache.records() if r.result.ok]
            keys[timing] = {r.backend_key for r in cache.records()}
    assert costs["0"] and set(costs["0"]) == {settings.repeat}  # hot: repeats of at least min_repeat_ms
    # cold: single flushed runs, as many as fit (up to the cap, for a kernel of microseconds); the task's
    # first timing is its best so far: run twice more
    assert costs["2"][0] == 3 * settings.max_flushed_runs
    assert keys == {timing: {tuner.resolve_backend(timing=timing).key} for timing in ("hot", "cold")}


class SlowFakeMeasurer(FakeMeasurer):
    def measure(self, task, configs, best_s=None):
        time.sleep(0.3)
        return super().measure(task, configs, best_s)


def test_time_budget_stops_tuning(model, backend, cache):
    settings = TuneSettings(trials=1000, batch_size=4, time_budget_s=0.5)
    report = tune(model, backend, cache, settings, measurer=SlowFakeMeasurer(), progress=False)
    assert 4 <= report.measured <= 12 and cache.count() == report.measured


def test_gradient_scheduler_tunes_every_task(model, backend, cache):
    settings = TuneSettings(trials=48, batch_size=4, scheduler="gradient")
    report = tune(model, backend, cache, settings, measurer=FakeMeasurer(), progress=False)
    assert report.measured <= 48
    assert all(task["best_ms"] is not None for task in report.tasks)


class KnobFakeMeasurer(FakeMeasurer):
    """Costs that depend on each knob's value separately, so a model can learn them."""

    def measure(self, task, configs, best_s=None):
        results = []
        for config in configs:
            self.measured.append((task.workload_key, config.to_json()))
            cost = 1e-4
            for name, value in config.as_dict().items():
                digest = int(hashlib.sha256(f"{name}={value}".encode()).hexdigest(), 16)
                cost *= 1 + (digest % 100) / 100
            results.append(MeasureResult((cost,)))
        return results


def test_model_guided_search_trains_stores_features_and_transfers(backend, cache):
    first = tuner.load(small_cnn_model(channels=8, size=12))
    fake = KnobFakeMeasurer()
    settings = TuneSettings(trials=48, batch_size=8, search="model", population=16)
    report = tune(first, backend, cache, settings, measurer=fake, progress=False)
    assert report.measured == 48 and len(set(fake.measured)) == 48
    assert report.search["strategy"] == "model" and report.search["model_trained"]
    assert report.search["transferred_rows"] == 0
    import costmodel

    first_tasks = report.tasks
    task = report.tasks[0]
    assert len(cache.features(backend.key, task["workload_key"], str(costmodel.FEATURE_VERSION))) > 0

    second = tuner.load(mlp_model(batch=2, sizes=(32, 48, 8)))
    report = tune(second, backend, cache, TuneSettings(trials=16, batch_size=8, search="model", population=16),
                  measurer=fake, progress=False)
    assert report.search["transferred_rows"] >= 40  # the first model's records, from stored features
    assert report.search["transferred_configs"] == len(first_tasks)  # each task's best config
    assert report.search["model_trained"]


def test_model_guided_search_offers_other_tasks_best_configs(model, backend, cache):
    import numpy as np

    import search_spaces
    from tuner.search import ModelGuidedSearch
    from tuner.tune import TaskState

    target = backend.tvm_target()
    states = [TaskState(t, search_spaces.space_for(t.func, target)) for t in tuner.partition(model, backend).tasks
              if "conv2d" in t.name]
    first, second = states  # conv1 (3 -> 8 channels) and conv2 (8 -> 8, residual add)
    search = ModelGuidedSearch(backend, cache)
    search.start(states)
    assert search.transfer_candidates(second) == []
    rng = np.random.default_rng(0)
    fitting = [(c, second.space.project(c)) for c in (first.space.sample(rng) for _ in range(20))]
    config, projected = next((c, p) for c, p in fitting if p is not None and c != first.space.default_config())
    for cost, candidate in ((2e-3, first.space.default_config()), (1e-3, config)):
        result = MeasureResult((cost,))
        first.observe(candidate.to_json(), result, 4)
        search.observe(first, [candidate], [result])
    assert search.transfer_candidates(second) == [projected]  # the first task's best, fitted to the second


def test_model_guided_search_spreads_its_picks_over_register_blocks(model, backend, cache, monkeypatch):
    import numpy as np

    from tuner.search import ModelGuidedSearch

    state = _conv_state(model, backend)
    for config in state.space.default_configs():
        state.observe(config.to_json(), MeasureResult((1e-3,)), 4)
    rng = np.random.default_rng(0)
    fresh = {c.to_json(): c for c in (state.space.sample(rng) for _ in range(200)) if c.to_json() not in state.seen}
    families = [state.space.family(c) for c in fresh.values()]
    crowded = max(set(families), key=families.count)
    assert families.count(crowded) >= 6 and len(set(families)) >= 3
    ranked = sorted(fresh.values(), key=lambda c: (state.space.family(c) != crowded, c.to_json()))
    scored = [(float(len(ranked) - i), c) for i, c in enumerate(ranked)]  # the crowded family scores best
    search = ModelGuidedSearch(backend, cache, explore_share=0.25, family_share=0.5, sweep_share=0.0)
    search.model_ = FlatModel()
    monkeypatch.setattr(search, "_evolve", lambda state, elites, rng: scored)
    picks = search.propose(state, 8, rng)[:6]  # 2 of 8 are random picks
    others = [c for c in ranked if state.space.family(c) != crowded]
    assert picks == ranked[:3] + others[:3]  # half from the best family, then the best of the others
    search.family_share = 1.0
    assert search.propose(state, 8, rng)[:6] == ranked[:6]


def test_model_guided_search_explores_the_best_measured_families(model, backend, cache, monkeypatch):
    import numpy as np

    from tuner.search import ModelGuidedSearch

    state = _conv_state(model, backend)
    rng = np.random.default_rng(0)
    by_family = {}
    for _ in range(200):
        config = state.space.sample(rng)
        by_family.setdefault(state.space.family(config), config)
    measured = list(by_family.values())[:3]
    families = [state.space.family(c) for c in measured]
    assert len(measured) == 3
    results = [MeasureResult((cost,)) for cost in (3e-3, 1e-3, 2e-3)]
    for config, result in zip(measured, results):
        state.observe(config.to_json(), result, 4)
    search = ModelGuidedSearch(backend, cache, explore_share=0.5, sweep_share=0.0, family_explore_share=0.5)
    search.observe(state, measured, results)
    search.model_ = FlatModel()
    scored = [(1.0, state.space.sample(rng)) for _ in range(4)]
    monkeypatch.setattr(search, "_evolve", lambda state, elites, rng: scored)
    picks = search.propose(state, 8, rng)
    assert len(picks) == 8 and not {c.to_json() for c in picks} & state.seen
    assert {c.to_json() for c in picks[:4]} == {c.to_json() for _, c in scored}  # the model's picks
    assert [state.space.family(c) for c in picks[4:6]] == families[1:]  # then one per family, best first


def test_family_exploration_reaches_a_second_family_when_the_best_configs_share_one(model, backend, cache,
                                                                                     monkeypatch):
    import numpy as np

    import search_spaces
    from tuner.search import ModelGuidedSearch

    state = _conv_state(model, backend)
    rng = np.random.default_rng(1)
    by_family = {}
    for _ in range(400):
        config = state.space.sample(rng)
        by_family.setdefault(state.space.family(config), {})[config.to_json()] = config
    first = next(list(c.values()) for c in by_family.values() if len(c) >= 5)
    second = next(list(c.values()) for f, c in by_family.items() if f != state.space.family(first[0]))
    measured = first[:5] + second[:1]  # the 5 best share a family: top_k (4) holds no other
    for cost, config in zip((1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3), measured):
        state.observe(config.to_json(), MeasureResult((cost,)), 4)
    assert {state.space.family(search_spaces.Config.from_json(c)) for _, c in state.best} == {
        state.space.family(first[0])}
    assert state.best_families(3) == [first[0].to_json(), second[0].to_json()]
    search = ModelGuidedSearch(backend, cache, explore_share=0.5, sweep_share=0.0, family_explore_share=0.5)
    search.model_ = FlatModel()
    monkeypatch.setattr(search, "_evolve", lambda state, elites, rng: [])
    picks = search.propose(state, 8, rng)
    assert [state.space.family(c) for c in picks[:2]] == [state.space.family(first[0]), state.space.family(second[0])]


def test_a_family_exploration_share_below_one_pick_is_drawn_batch_by_batch(model, backend, cache, monkeypatch):
    import numpy as np

    from tuner.search import ModelGuidedSearch

    state = _conv_state(model, backend)
    state.observe(state.space.default_config().to_json(), MeasureResult((1e-3,)), 4)
    search = ModelGuidedSearch(backend, cache, explore_share=0.25)  # 2 exploration picks in batches of 8
    search.model_ = FlatModel()
    asked = []
    monkeypatch.setattr(search, "_evolve", lambda state, elites, rng: [])
    monkeypatch.setattr(search, "_sweep", lambda offer, state, elites, count: None)
    monkeypatch.setattr(search, "_vetted", lambda offer, state, draw: None)
    monkeypatch.setattr(search, "_explore_families",
                        lambda offer, state, count, rng: asked.append(count - len(offer.configs)))
    rng = np.random.default_rng(0)
    for _ in range(200):
        search.propose(state, ModelGuidedSearch.batch_size, rng)
    explore = math.ceil(search.explore_share * ModelGuidedSearch.batch_size)
    share = search.family_explore_share * explore  # half a pick per batch
    assert 0 < share < 1 and set(asked) == {0, 1}
    assert np.mean(asked) == pytest.approx(share, abs=0.1)  # on average, not rounded away in every batch


def test_exploration_picks_the_better_scored_of_two_random_configs(model, backend, cache, monkeypatch):
    import numpy as np

    from tuner.search import ModelGuidedSearch

    state = _conv_state(model, backend)
    state.observe(state.space.default_config().to_json(), MeasureResult((1e-3,)), 4)
    rng = np.random.default_rng(0)
    draws = list({c.to_json(): c for c in (state.space.sample(rng) for _ in range(100))
                  if c.to_json() not in state.seen}.values())[:32]
    assert len(draws) == 32
    scores = {config.to_json(): float(i % 2) for i, config in enumerate(draws)}  # every second draw scores higher
    search = ModelGuidedSearch(backend, cache, explore_share=1.0, sweep_share=0.0, family_explore_share=0.0)
    search.model_ = FlatModel()
    monkeypatch.setattr(search, "_evolve", lambda state, elites, rng: [])
    monkeypatch.setattr(search, "_score", lambda state, candidates, pool: pool.update(
        {c.to_json(): (scores[c.to_json()], c) for c in candidates}))
    stream = iter(draws)
    monkeypatch.setattr(state.space, "sample", lambda rng: next(stream))
    assert search.propose(state, 8, rng) == draws[1:16:2]  # all 8 picks are exploration: random configs
    search.explore_draws = 1
    stream = iter(draws)
    assert search.propose(state, 8, rng) == draws[:8]


def test_model_guided_search_scores_every_config_two_small_knob_changes_from_the_best(model, backend, cache):
    import numpy as np

    from tuner.search import ModelGuidedSearch

    state = _conv_state(model, backend)
    best = state.space.default_config()
    for cost, config in ((1e-3, best), (2e-3, state.space.default_configs()[-1])):
        state.observe(config.to_json(), MeasureResult((cost,)), 4)
    one = {c.to_json() for c in state.space.neighbours(best)}
    two = one | {n.to_json() for c in state.space.neighbours(best) for n in state.space.neighbours(c)}
    two -= {best.to_json()}
    assert len(two) > 2 * len(one)  # changes of two knobs too
    search = ModelGuidedSearch(backend, cache, population=8, max_population=8)
    search.model_ = FlatModel()
    scored = {c.to_json() for _, c in search._evolve(state, [best], np.random.default_rng(0))}
    assert two - state.seen <= scored  # all of them, beside 8 mutations and random samples
    assert len(scored - two) <= 8
    search.local_steps = 1
    scored = {c.to_json() for _, c in search._evolve(state, [best], np.random.default_rng(0))}
    assert one - state.seen <= scored and not two - one <= scored


def test_model_guided_search_measures_every_small_knob_neighbour_of_the_best(model, backend, cache, monkeypatch):
    import numpy as np

    from tuner.search import ModelGuidedSearch

    class LastScoresBest:  # a model that scores the candidates it is given in rising order
        def predict(self, X):
            return np.arange(len(X), dtype=float)

    state = _conv_state(model, backend)
    best = state.space.default_config()
    for cost, config in ((1e-3, best), (2e-3, state.space.default_configs()[-1])):
        state.observe(config.to_json(), MeasureResult((cost,)), 4)
    search = ModelGuidedSearch(backend, cache, explore_share=0.5, sweep_share=1.0, family_explore_share=0.0)
    search.model_ = LastScoresBest()
    monkeypatch.setattr(search, "_evolve", lambda state, elites, rng: [])
    neighbours = [c for c in state.space.neighbours(best) if c.to_json() not in state.seen]
    assert len(neighbours) > 4
    rng = np.random.default_rng(0)
    picks = search.propose(state, 8, rng)
    assert picks[:4] == neighbours[::-1][:4]  # the best config's neighbours, highest score first
    swept = set()
    for _ in range(len(neighbours)):
        picks = search.propose(state, 8, rng)
        for config in picks:
            state.observe(config.to_json(), MeasureResult((5e-3,)), 4)
        swept |= {c.to_json() for c in picks[:4]}
        if {c.to_json() for c in neighbours} <= state.seen:
            break
    assert {c.to_json() for c in neighbours} <= swept  # all measured, then the next best config's
    assert state.best[0][1] == best.to_json()


def test_a_batch_never_exceeds_its_count_not_even_with_tied_defaults(backend, cache, monkeypatch):
    import numpy as np

    import search_spaces
    from tuner.search import ModelGuidedSearch, RandomSearch
    from tuner.tune import TaskState

    model = tuner.load(mlp_model())
    target = backend.tvm_target()
    states = [TaskState(t, search_spaces.space_for(t.func, target)) for t in tuner.partition(model, backend).tasks]
    state = next(s for s in states if len(s.space.default_configs()) > 1)  # a default tied with other blocks
    defaults = state.space.default_configs()
    rng = np.random.default_rng(0)
    assert RandomSearch().propose(state, 1, rng) == defaults[:1]
    fake = FakeMeasurer()
    report = tune(model, backend, cache, TuneSettings(trials=1), measurer=fake, progress=False)
    assert report.trials == 1 and len(fake.measured) == 1
    state.observe(defaults[0].to_json(), MeasureResult((1e-3,)), 4)
    search = ModelGuidedSearch(backend, cache, explore_share=1.0, sweep_share=1.0, family_explore_share=1.0)
    search.model_ = FlatModel()
    monkeypatch.setattr(search, "_evolve", lambda state, elites, rng: [])
    monkeypatch.setattr(search, "_score", lambda state, candidates, pool: pool.update(
        {c.to_json(): (0.0, c) for c in candidates}))
    picks = search.propose(state, 3, rng)
    assert len(picks) == 3 and not {c.to_json() for c in picks} & state.seen


def test_report_curve_follows_the_estimated_latency(model, backend, cache):
    report = tune(model, backend, cache, TuneSettings(trials=48, batch_size=8), measurer=FakeMeasurer(),
                  progress=False)
    trials = [point[0] for point in report.curve]
    estimates = [point[1] for point in report.curve if point[1] is not None]
    assert trials[0] == 0 and trials[-1] == 48 and trials == sorted(trials)
    assert report.curve[0][1] is None and estimates  # unknown until every task has a measurement
    assert all(later <= earlier for earlier, later in zip(estimates, estimates[1:]))
    assert estimates[-1] == pytest.approx(report.estimated_ms)
    assert report.to_json()["curve"][-1] == [48, pytest.approx(report.estimated_ms)]
    resumed = tune(model, backend, cache, TuneSettings(trials=56, batch_size=8), measurer=FakeMeasurer(),
                   progress=False)
    assert resumed.curve[0] == (48, pytest.approx(report.estimated_ms)) and resumed.curve[-1][0] == 56


def test_format_seconds_keeps_tiny_kernels_readable():
    from tuner.progress import format_seconds

    assert format_seconds(3.92e-8) == "0.0392 us" and format_seconds(5.38e-5) == "53.8 us"
    assert format_seconds(2.5e-3) == "2.500 ms"
