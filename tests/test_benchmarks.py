"""The benchmark scripts' own logic, on small data: the figures they print rest on it."""

import numpy as np
import pytest

import tuner
from benchmarks import costmodel_eval, search_compare
from benchmarks.models import small_cnn_model
from test_tune import KnobFakeMeasurer
from tuner.tune import TuneSettings, tune


def test_trials_to_reach_and_median_count_unreached_as_worst():
    curve = np.array([5.0, 4.0, 4.0, 2.0])
    assert search_compare.trials_to_reach(curve, 4.0) == 2 and search_compare.trials_to_reach(curve, 1.0) is None
    assert search_compare._median_trials([3, None, 5], limit=10) == 5
    assert search_compare._median_trials([None, None, 5], limit=10) is None


def test_costmodel_eval_scores_line_up_with_held_out_rows(tmp_path, backend):
    model = tuner.load(small_cnn_model(channels=8, size=12))
    with tuner.Cache(tmp_path / "cache.sqlite") as cache:
        tune(model, backend, cache, TuneSettings(trials=96, batch_size=8), measurer=KnobFakeMeasurer(),
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
    held_out_tasks = [set(test) for name, _, test in splits if name.startswith("tasks")]
    assert set.union(*held_out_tasks) == {t.workload_key for t in tasks}
    summary = costmodel_eval.summary([{"split": "configs/0", "model": "ours", "pairwise_accuracy": 0.8,
                                       "top1_score": float("nan")}])
    assert summary[0]["pairwise_accuracy"] == pytest.approx(0.8) and np.isnan(summary[0]["top1_score"])
