"""The benchmark scripts' own logic, on small data: the figures they print rest on it."""

import threading
import time

import numpy as np
import pytest

import tuner
from benchmarks import ab, alternate, compare_caches, costmodel_eval, search_compare, warm_start
from benchmarks.models import small_cnn_model
from fakes import RANDOM, KnobFakeRunner, fake
from tuner.records import MeasureResult, Record
from tuner.tune import TuneSettings, tune


def test_trials_to_reach_and_median_count_unreached_as_worst():
    curve = np.array([5.0, 4.0, 4.0, 2.0])
    assert search_compare.trials_to_reach(curve, 4.0) == 2 and search_compare.trials_to_reach(curve, 1.0) is None
    assert search_compare._median_trials([3, None, 5], limit=10) == 5
    assert search_compare._median_trials([None, None, 5], limit=10) is None


def test_search_compare_rows_compare_the_configs_both_runs_measured_near_the_best(monkeypatch, tmp_path):
    runs = {"random": (np.array([3.0, 2.0, 1.0, 1.0]), "a", {"a": 1.0, "b": 1.1, "c": 2.0, "d": 3.0}),
            "model": (np.array([2.2, 1.21]), "b", {"b": 1.21, "d": 3.3, "e": 1.05})}
    monkeypatch.setattr(search_compare, "tune_curve", lambda op, search, *args: runs[search])
    row = search_compare.compare("matmul", 0, 4, 2, tmp_path, None, rounds=0)
    assert row["shared_near_best_ratios"] == [pytest.approx(1.1)]  # "d" is far from the best, "e" only in one run
    assert row["random_best_ms"] == 1000.0 and row["model_best_ms"] == pytest.approx(1210.0)
    assert row["model_trials_to_random_best"] is None and row["model_trials_to_random_best_within_2pct"] is None
    assert row["remeasured_model_best_ms"] is None


def test_search_compare_measures_each_searchs_top_configs_again_and_keeps_the_fastest(monkeypatch, tmp_path):
    runs = {"random": (np.array([3.0, 1.0]), "a", {"a": 1.0, "b": 1.1, "c": 2.0}),
            "model": (np.array([2.2, 1.2]), "d", {"d": 1.2, "b": 1.3, "e": 3.0})}
    again = {"a": 2.0, "b": 1.5, "c": 0.5, "d": 1.8, "e": 0.1}  # "c" and "e" are past the top 2
    pools = []
    monkeypatch.setattr(search_compare, "tune_curve", lambda op, search, *args: runs[search])
    monkeypatch.setattr(search_compare, "remeasure",
                        lambda op, configs, rounds, backend: pools.append(configs) or [again[c] for c in configs])
    row = search_compare.compare("matmul", 0, 2, 2, tmp_path, None, rounds=3, top=2)
    assert pools == [["a", "b", "d"]]  # "b" is in both tops and measured once
    assert row["remeasured_random_best_ms"] == 1500.0 and row["remeasured_random_best_config"] == "b"
    assert row["remeasured_model_best_ms"] == 1500.0 and row["remeasured_model_best_config"] == "b"
    assert row["remeasured_random_best_rank"] == 2 and row["remeasured_model_best_rank"] == 2
    row = search_compare.compare("matmul", 0, 2, 2, tmp_path, None, rounds=3)  # top 1: each recorded best
    assert pools[-1] == ["a", "d"] and row["remeasured_model_best_ms"] == 1800.0
    assert row["remeasured_random_best_rank"] == 1 and row["remeasured_model_best_rank"] == 1


class _LoggingBuilder:
    """Records when each build of a job runs; ``busy`` holds the job that is running."""

    def __init__(self, name, log, busy):
        self.name, self.log, self.busy = name, log, busy

    def build(self, task, configs):
        self.log.append((self.name, len(configs), set(self.busy)))
        time.sleep(0.002)
        return [MeasureResult((1e-3,)) for _ in configs]


def test_alternate_runs_one_job_at_a_time_in_proportion_to_the_budgets():
    log, busy, lock = [], set(), threading.Lock()

    def job(budget, batch):
        def run(alternation, name):
            builder = alternation.builder(name, _LoggingBuilder(name, log, busy))
            with lock:
                busy.add(name)
            for done in range(0, budget, batch):
                time.sleep(0.001)  # proposing between batches holds the turn too
                with lock:
                    busy.remove(name)
                builder.build(None, [None] * min(batch, budget - done))
                with lock:
                    busy.add(name)
            with lock:
                busy.remove(name)
            return name * 2
        return budget, run

    results, alternation = alternate.alternate({"big": job(64, 4), "small": job(16, 4)})
    assert results == {"big": "bigbig", "small": "smallsmall"}
    assert all(not others for _, _, others in log)  # nothing else ran while a job measured
    assert alternation.turns == [(name, trials) for name, trials, _ in log]
    done = {"big": 0, "small": 0}
    for name, trials, _ in log:  # the job furthest behind its budget measures next
        done[name] += trials
        assert abs(done["big"] / 64 - done["small"] / 16) <= 4 / 16 + 1e-9
    assert done == {"big": 64, "small": 16}


def test_alternate_lets_the_other_job_finish_when_one_fails():
    def failing(alternation, name):
        raise RuntimeError("build exploded")

    log = []

    def fine(alternation, name):
        builder = alternation.builder(name, _LoggingBuilder(name, log, set()))
        return len(builder.build(None, [None] * 3))

    with pytest.raises(RuntimeError, match="build exploded"):
        alternate.alternate({"a": (8, failing), "b": (8, fine)})
    assert log == [("b", 3, set())]  # the other job still measured


def test_costmodel_eval_scores_line_up_with_held_out_rows(tmp_path, backend):
    model = tuner.load(small_cnn_model(channels=8, size=12))
    with tuner.Cache(tmp_path / "cache.sqlite") as cache:
        tune(model, backend, cache, TuneSettings(trials=96, batch_size=8, **RANDOM), **fake(KnobFakeRunner()),
             progress=False)
        tasks = costmodel_eval.load_dataset(cache, backend, min_rows_per_task=8)
    assert len(tasks) >= 2 and all(len(t.costs_s) == len(t.features) == len(t.mods) for t in tasks)
    splits = list(costmodel_eval.config_splits(tasks, 2)) + list(costmodel_eval.task_splits(tasks, 2))
    for name, train, test in splits:
        assert all(not set(train.get(key, ())) & set(rows) for key, rows in test.items()), name
        _, y_test, groups = costmodel_eval._stack(tasks, test)
        for scores in (costmodel_eval.ours(tasks, train, test, seed=0),
                       costmodel_eval.metaschedule(tasks, train, test, backend)):
            assert scores.shape == y_test.shape and np.all(np.isfinite(scores))
            row = costmodel_eval.metrics(y_test, scores, groups)
            assert 0.0 <= row["pairwise_accuracy"] <= 1.0 and 0.0 < row["top1_score"] <= 1.0
            by_task = costmodel_eval.per_task(y_test, scores, groups)
            assert set(by_task) == set(groups)  # the overall top-1 score is the mean of the tasks'
            assert np.nanmean([m["top1_score"] for m in by_task.values()]) == pytest.approx(row["top1_score"])
    held_out_tasks = [set(test) for name, _, test in splits if name.startswith("tasks")]
    assert set.union(*held_out_tasks) == {t.workload_key for t in tasks}
    summary = costmodel_eval.summary([{"split": "configs/0", "model": "ours", "pairwise_accuracy": 0.8,
                                       "top1_score": float("nan")}])
    assert summary[0]["pairwise_accuracy"] == pytest.approx(0.8) and np.isnan(summary[0]["top1_score"])


def test_costmodel_eval_compares_the_models_split_by_split_and_task_by_task():
    def row(split, model, pairwise, top1, per_task):
        return {"split": split, "model": model, "pairwise_accuracy": pairwise, "top1_score": top1,
                "per_task": {key: {"pairwise_accuracy": p, "top1_score": t} for key, (p, t) in per_task.items()}}
    rows = [row("configs/0", "ours", 0.9, 0.95, {"a": (0.9, 1.0), "b": (0.8, 0.9)}),
            row("configs/0", "metaschedule", 0.8, 0.90, {"a": (0.7, 0.8), "b": (0.9, 1.0)}),
            row("configs/1", "ours", 0.9, 0.80, {"a": (0.7, 0.6), "b": (0.9, 1.0)}),
            row("configs/1", "metaschedule", 0.7, 0.85, {"a": (0.9, 0.7), "b": (0.5, 1.0)}),
            row("configs/2", "ours", 0.9, 0.9, {"a": (0.9, 0.9)}),  # MetaSchedule did not score this one
            row("tasks/0", "ours", 0.5, 0.5, {"a": (0.5, 0.5)}), row("tasks/0", "metaschedule", 0.6, 0.6, {})]
    diff = costmodel_eval.paired(rows)
    assert diff["splits"] == 2
    assert diff["pairwise_accuracy"]["mean"] == pytest.approx(0.15) and diff["pairwise_accuracy"]["ours_not_worse"] == 2
    assert diff["top1_score"]["mean"] == pytest.approx(0.0) and diff["top1_score"]["ours_not_worse"] == 1
    assert costmodel_eval.paired(rows, "tasks")["top1_score"]["mean"] == pytest.approx(-0.1)
    tasks = [costmodel_eval.TaskData("a", "task_a", 1.0, np.ones(8), np.zeros((8, 1)), []),
             costmodel_eval.TaskData("b", "task_b", 1.0, np.ones(4), np.zeros((4, 1)), [])]
    table = {entry["task"]: entry for entry in costmodel_eval.task_table(rows, tasks)}
    assert table["task_a"]["records"] == 8
    assert table["task_a"]["ours_top1_score"] == pytest.approx((1.0 + 0.6 + 0.9) / 3)  # held-out tasks left out
    assert table["task_b"]["metaschedule_pairwise_accuracy"] == pytest.approx(0.7)


def test_warm_start_snapshot_keeps_the_models_first_records_in_order(tmp_path, backend):
    def record(workload, index):
        config = f'{{"knobs":{{"k":{index}}},"rule":"r"}}'
        return Record(backend.key, workload, "task", config, MeasureResult((1e-3 * (index + 1),)), {})

    with tuner.Cache(tmp_path / "run.sqlite") as cache:  # another model's records first, as in a warm run
        cache.add_many([record("other", i) for i in range(3)])
        cache.add_many([record("a" if i % 2 else "b", i) for i in range(6)])
    path = warm_start.snapshot(tmp_path / "run.sqlite", tmp_path / "at-3.sqlite", backend, {"a", "b"}, 3)
    with tuner.Cache(path) as snapshot:
        kept = [(r.workload_key, r.result.mean_s) for r in snapshot.records(backend.key)]
    assert kept == [("b", 1e-3), ("a", 2e-3), ("b", 3e-3)]


def test_compare_caches_builds_each_cache_with_its_timing_and_lines_up_recorded_and_in_model_times(tmp_path):
    import search_spaces

    assert compare_caches.parse_cache("a/b.sqlite:hot") == ("a/b.sqlite", "hot")
    assert compare_caches.parse_cache("c:d.sqlite") == ("c:d.sqlite", tuner.backend.DEFAULT_TIMING)
    model = tuner.load(small_cnn_model())
    hot = tuner.resolve_backend(timing="hot")
    task = tuner.partition(model, hot).tasks[0]
    config = search_spaces.space_for(task.func, hot.tvm_target()).default_config()
    with tuner.Cache(tmp_path / "hot.sqlite") as cache:
        cache.add(Record(hot.key, task.workload_key, task.name, config.to_json(), MeasureResult((2e-3,))))
    caches = [(str(tmp_path / "hot.sqlite"), "hot"), (str(tmp_path / "hot.sqlite"), "cold")]
    result = compare_caches.compare(model, caches, rounds=2, min_repeat_s=0.01)
    names = [f"{path}:{timing}" for path, timing in caches]
    assert list(result["median_ms"]) == names + ["onnxruntime"]
    assert all(len(result["rounds_ms"][name]) == 2 and result["median_ms"][name] > 0 for name in result["median_ms"])
    hot_rows = {row["task"]: row for row in result["tasks"][names[0]]}
    assert hot_rows[task.name]["recorded_ms"] == pytest.approx(2.0) and hot_rows[task.name]["in_model_ms"] > 0
    assert [row for row in hot_rows.values() if row["recorded_ms"] is not None] == [hot_rows[task.name]]
    # the same file read with cold timing has no record of this machine: defaults everywhere
    assert all(row["recorded_ms"] is None for row in result["tasks"][names[1]])


def test_gpu_vs_cudnn_prepares_the_cases_here_and_times_them_only_on_a_gpu(tmp_path, capsys):
    from benchmarks import gpu_vs_cudnn
    from benchmarks.onnx_torch import graph_json
    from benchmarks.models import transformer_encoder_model

    manifest = gpu_vs_cudnn.prepare(tmp_path, ["conv1x1"], [2], "sm_90", None, None)
    (entry,) = manifest["cases"]
    assert entry["name"] == "conv1x1_b2" and entry["builds"]["untuned"]["tasks"] >= 1
    assert (tmp_path / entry["builds"]["untuned"]["file"]).read_bytes().count(b"__global__") >= 1
    graph = __import__("json").loads((tmp_path / "conv1x1_b2" / "graph.json").read_text())
    assert [node["op"] for node in graph["nodes"]] == ["Conv"] and graph["input_shapes"] == [[2, 64, 56, 56]]
    assert gpu_vs_cudnn.case_inputs(graph)[0].shape == (2, 64, 56, 56)
    # the weights are made again from the seed on the GPU machine, and checked against the prepared ones
    assert gpu_vs_cudnn.case_weights(entry, graph)["conv.weight"].shape == (256, 64, 1, 1)
    with pytest.raises(RuntimeError, match="other weights"):
        gpu_vs_cudnn.case_weights(entry, {**graph, "weights_sha256": "0" * 64})
    # the transformer's Constant shapes and scales become weights, so PyTorch needs no onnx
    transformer, weights = graph_json(transformer_encoder_model(seq_len=8, d_model=16, num_heads=2, d_ff=32))
    assert "Constant" not in {node["op"] for node in transformer["nodes"]} and transformer["inputs"] == ["x"]
    known = set(weights) | set(transformer["inputs"])
    for node in transformer["nodes"]:  # in order, each node's inputs are known before it runs
        assert set(node["inputs"]) <= known
        known.update(node["outputs"])

    status = gpu_vs_cudnn.run(tmp_path, repeat=1, json_path=str(tmp_path / "rows.json"))
    if gpu_vs_cudnn._no_gpu_reason() is None:
        assert status == 0 and (tmp_path / "rows.json").exists()
    else:
        error = capsys.readouterr().err
        assert status == 2 and "timing them needs an NVIDIA GPU" in error and not (tmp_path / "rows.json").exists()


def test_ab_builds_each_tree_in_its_own_worker_and_times_them_in_turn(tmp_path, capsys):
    """The same tree twice: two rows, each matching ONNX Runtime; a folder without the sources
    (no benchmarks package to build from) is an error that names it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ab.main(["small_cnn", str(root), str(root), "--repeat", "2", "--out", str(tmp_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("small_cnn ")]
    assert len(rows) == 2 and all("to the first" in row for row in rows)
    assert all(float(row.rsplit("rel. diff ", 1)[1].split(",")[0]) < 1e-4 for row in rows)
    with pytest.raises(RuntimeError, match=str(tmp_path)):
        ab.Worker(tmp_path, "small_cnn", tmp_path / "out.npy")


def test_ab_builds_each_tree_from_its_own_cache(tmp_path, capsys, backend):
    """With a cache per tree each build takes that cache's records (the row says how many tasks had
    one); a count of caches that does not match the trees is an error before anything is built."""
    from pathlib import Path

    root, tuned, empty = Path(__file__).resolve().parents[1], tmp_path / "tuned.sqlite", tmp_path / "empty.sqlite"
    with tuner.Cache(tuned) as cache:
        tune(tuner.load(small_cnn_model()), backend, cache, TuneSettings(trials=1))
    tuner.Cache(empty).close()
    ab.main(["small_cnn", str(root), str(root), "--repeat", "1", "--out", str(tmp_path),
             "--cache", str(tuned), "--cache", str(empty)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("small_cnn ")]
    assert [row.rsplit("tuned ", 1)[1].split("/")[0] for row in rows] == ["1", "0"], rows
    with pytest.raises(SystemExit):
        ab.main(["small_cnn", str(root), str(root), "--cache", str(tuned)])
    assert "1 --cache for 2 trees" in capsys.readouterr().err
