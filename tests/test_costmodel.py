"""costmodel: ranking metrics on hand-computed cases, and the XGBoost model on synthetic data."""

import hashlib
import json
import math

import numpy as np
import pytest

from costmodel import (FEATURE_VERSION, CostModelError, XGBCostModel, pairwise_accuracy, top1_score,
                       top_k_recall)
from costmodel.model import normalize_per_group, sidecar_path


# ----- metrics ---------------------------------------------------------------------------
def test_pairwise_accuracy_perfect_reversed_and_ties():
    assert pairwise_accuracy([1, 2, 3], [10, 20, 30], [0, 0, 0]) == 1.0
    assert pairwise_accuracy([1, 2, 3], [30, 20, 10], [0, 0, 0]) == 0.0
    # (0, 1) is a true tie and does not count; (0, 2) is right; (1, 2) is a predicted tie: half
    assert pairwise_accuracy([1, 1, 2], [0, 5, 5], [0, 0, 0]) == 0.75


def test_pairwise_accuracy_only_compares_rows_of_one_group():
    # group "a" is ordered right, group "b" reversed; pairs across groups do not count
    assert pairwise_accuracy([1, 2, 1, 2], [1, 2, 2, 1], ["a", "a", "b", "b"]) == 0.5
    # three right pairs in group 7, one wrong pair in group 9: pooled over pairs
    assert pairwise_accuracy([1, 2, 3, 1, 2], [1, 2, 3, 5, 0], [7, 7, 7, 9, 9]) == 0.75


def test_pairwise_accuracy_without_pairs_is_nan():
    assert math.isnan(pairwise_accuracy([1, 1, 2], [1, 2, 3], [0, 0, 1]))


def test_top_k_recall():
    truth = [5, 4, 3, 2, 1]
    assert top_k_recall(truth, [5, 4, 3, 2, 1], [0] * 5, k=2) == 1.0
    assert top_k_recall(truth, [1, 2, 3, 4, 5], [0] * 5, k=2) == 0.0
    # predicted top 2 are rows 0 (true best) and 2 (true third): one of two
    assert top_k_recall(truth, [5, 1, 4, 2, 3], [0] * 5, k=2) == 0.5
    # averaged over groups: two of three (rows 0 and 2), and 1.0 for a group smaller than k
    assert top_k_recall(truth + [1, 2], [5, 1, 4, 2, 3] + [0, 0], [0] * 5 + [1] * 2, k=3) == pytest.approx(
        (2 / 3 + 1.0) / 2)


def test_top_k_recall_ties_and_bad_k():
    # rows 0 and 1 tie for the best true value: either one is a hit
    assert top_k_recall([3, 3, 1], [0, 1, 2], [0, 0, 0], k=1) == 0.0
    assert top_k_recall([3, 3, 1], [0, 1, 0], [0, 0, 0], k=1) == 1.0
    for bad in (0, -1, 1.5, True):
        with pytest.raises(CostModelError, match="k must be a positive integer"):
            top_k_recall([1, 2], [1, 2], [0, 0], k=bad)


def test_top1_score():
    # group 0 picks row 2 (true 2 of best 4): 0.5; group 1 picks its best: 1.0
    assert top1_score([1, 4, 2, 3, 6], [0, 1, 5, 0, 1], [0, 0, 0, 1, 1]) == 0.75
    # tied predictions: the mean of the tied rows' true values, (2 + 4) / 2 / 4
    assert top1_score([2, 4], [1, 1], [0, 0]) == 0.75
    # a group where every candidate failed (best 0) is skipped
    assert top1_score([0, 0, 1, 2], [1, 0, 1, 0], [0, 0, 1, 1]) == 0.5
    assert math.isnan(top1_score([0, 0], [1, 0], [0, 0]))


def test_metrics_check_their_inputs():
    with pytest.raises(CostModelError, match="one length"):
        pairwise_accuracy([1, 2, 3], [1, 2], [0, 0, 0])
    with pytest.raises(CostModelError, match="finite"):
        top1_score([1, np.nan], [1, 2], [0, 0])


# ----- model -----------------------------------------------------------------------------
def synthetic(rows_per_group=100, n_groups=5, n_features=12, seed=0):
    """Throughput that is a known function of X, on very different scales per group."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows_per_group * n_groups, n_features)).astype(np.float32)
    groups = np.repeat([f"task{g}" for g in range(n_groups)], rows_per_group)
    scale = np.repeat(10.0 ** np.arange(n_groups), rows_per_group)
    y = scale * np.exp(X[:, 0] + 0.5 * X[:, 1] - 0.3 * X[:, 2] ** 2)
    held_out = rng.random(len(y)) < 0.25
    return X, y, groups, held_out


SMALL = {"n_estimators": 60, "max_depth": 4, "nthread": 1}


@pytest.mark.parametrize("objective, pair_method", [("rank:pairwise", "mean"), ("rank:pairwise", "topk"),
                                                     ("reg:squarederror", "mean")])
def test_fit_learns_a_known_ranking(objective, pair_method):
    X, y, groups, held_out = synthetic()
    model = XGBCostModel(objective=objective, lambdarank_pair_method=pair_method, **SMALL)
    assert model.fit(X[~held_out], y[~held_out], groups[~held_out]) is model
    scores = model.predict(X[held_out])
    assert scores.shape == (held_out.sum(),)
    assert pairwise_accuracy(y[held_out], scores, groups[held_out]) >= 0.9
    assert top1_score(y[held_out], scores, groups[held_out]) >= 0.8
    assert model.n_features_in_ == X.shape[1] and model.feature_version_ == FEATURE_VERSION
    assert 1 <= model.n_estimators_ <= SMALL["n_estimators"]


def test_fit_accepts_int_groups_and_refits_on_more_rows():
    X, y, _, _ = synthetic(rows_per_group=40, n_groups=2)
    groups = np.repeat([3, 11], 40)
    model = XGBCostModel(**SMALL).fit(X[:60], y[:60], groups[:60])
    first = model.predict(X)
    model.fit(X, y, groups)  # all rows measured so far
    assert not np.array_equal(first, model.predict(X))


def test_targets_are_normalized_per_group():
    codes = np.array([0, 0, 1, 1, 2])
    assert normalize_per_group(np.array([1.0, 4.0, 30.0, 60.0, 0.0]), codes).tolist() == [0.25, 1.0, 0.5, 1.0, 0.0]


def test_without_early_stopping_all_rounds_are_trained():
    X, y, groups, _ = synthetic(rows_per_group=20, n_groups=2)
    assert XGBCostModel(**{**SMALL, "early_stopping_rounds": None}).fit(X, y, groups).n_estimators_ == 60
    # held-out rows that all tie leave early stopping nothing to watch
    assert XGBCostModel(**SMALL).fit(X, np.ones_like(y), groups).n_estimators_ == 60


def test_failed_candidates_and_tiny_groups_train():
    X, y, groups, _ = synthetic(rows_per_group=6, n_groups=3)
    y[:3] = 0.0  # failed candidates are throughput 0
    y[6:12] = 0.0  # a task whose candidates all failed
    model = XGBCostModel(**SMALL).fit(X, y, groups)
    assert np.all(np.isfinite(model.predict(X)))


def test_predict_before_fit_raises():
    with pytest.raises(CostModelError, match="not fitted"):
        XGBCostModel().predict(np.zeros((2, 3)))
    with pytest.raises(CostModelError, match="not fitted"):
        XGBCostModel().save("unused.json")


def test_bad_input_raises():
    X, y, groups, _ = synthetic(rows_per_group=10, n_groups=2)
    model = XGBCostModel(**SMALL)
    with pytest.raises(CostModelError, match="y must be finite"):
        model.fit(X, -y, groups)
    with pytest.raises(CostModelError, match="NaN"):
        model.fit(np.where(X > 2, np.nan, X), y, groups)
    with pytest.raises(CostModelError, match="groups must have one entry per row"):
        model.fit(X, y, groups[:-1])
    with pytest.raises(CostModelError, match="objective 'rank:xyz' is not supported"):
        XGBCostModel(objective="rank:xyz").fit(X, y, groups)
    with pytest.raises(CostModelError, match="lambdarank_pair_method 'best' is not supported"):
        XGBCostModel(lambdarank_pair_method="best").fit(X, y, groups)
    model.fit(X, y, groups)
    with pytest.raises(CostModelError, match="fitted with 12"):
        model.predict(X[:, :5])


def test_params_follow_the_sklearn_contract():
    model = XGBCostModel(max_depth=3)
    assert model.get_params()["max_depth"] == 3 and not hasattr(model, "booster_")
    assert model.set_params(max_depth=5) is model and model.max_depth == 5
    with pytest.raises(CostModelError, match="unknown parameter"):
        model.set_params(depth=5)


# ----- save / load -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    X, y, groups, _ = synthetic(rows_per_group=30, n_groups=3)
    return XGBCostModel(**SMALL).fit(X, y, groups, backend="llvm-znver4-test"), X


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_save_load_round_trip(tmp_path, fitted, suffix):
    model, X = fitted
    path = tmp_path / f"model{suffix}"
    model.save(path)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["kind"] == "costmodel.XGBCostModel" and meta["feature_version"] == FEATURE_VERSION
    assert meta["n_features"] == X.shape[1] and meta["backend"] == "llvm-znver4-test"
    assert meta["params"] == model.get_params() and "format_version" in meta
    loaded = XGBCostModel.load(path)
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert loaded.get_params() == model.get_params() and loaded.backend_ == "llvm-znver4-test"
    model.save(path, backend="other")
    assert XGBCostModel.load(path).backend_ == "other"


def test_save_needs_an_xgboost_suffix(tmp_path, fitted):
    with pytest.raises(CostModelError, match="model.pkl: a cost model file must end in"):
        fitted[0].save(tmp_path / "model.pkl")


def _saved(tmp_path, fitted, name="model.json"):
    path = tmp_path / name
    fitted[0].save(path)
    return path


def _edit_sidecar(path, **changes):
    meta = json.loads(sidecar_path(path).read_text())
    meta.update(changes)
    sidecar_path(path).write_text(json.dumps(meta))


def test_load_missing_files(tmp_path, fitted):
    with pytest.raises(CostModelError, match="absent.json: no such cost model file"):
        XGBCostModel.load(tmp_path / "absent.json")
    path = _saved(tmp_path, fitted)
    sidecar_path(path).unlink()
    with pytest.raises(CostModelError, match="model.json: its sidecar model.json.meta.json is missing"):
        XGBCostModel.load(path)


def test_load_foreign_or_corrupt_sidecar(tmp_path, fitted):
    path = _saved(tmp_path, fitted)
    _edit_sidecar(path, kind="tuner.Cache")
    with pytest.raises(CostModelError, match="model.json.meta.json: holds a 'tuner.Cache'"):
        XGBCostModel.load(path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(CostModelError, match="model.json.meta.json: not valid JSON"):
        XGBCostModel.load(path)
    path = _saved(tmp_path, fitted)
    _edit_sidecar(path, format_version=99)
    with pytest.raises(CostModelError, match="format version 99 is not supported"):
        XGBCostModel.load(path)


def test_load_wrong_feature_version(tmp_path, fitted):
    path = _saved(tmp_path, fitted)
    _edit_sidecar(path, feature_version=-7)
    with pytest.raises(CostModelError, match="model.json: trained on feature version -7"):
        XGBCostModel.load(path)


def test_load_wrong_or_corrupt_booster_file(tmp_path, fitted):
    path = _saved(tmp_path, fitted)
    other = _saved(tmp_path, (XGBCostModel(**SMALL).fit(*synthetic(10, 2)[:3]), None), "other.json")
    path.write_bytes(other.read_bytes())
    with pytest.raises(CostModelError, match="model.json: the file does not match its sidecar"):
        XGBCostModel.load(path)
    path.write_bytes(b"not a booster")
    _edit_sidecar(path, booster_sha256=hashlib.sha256(b"not a booster").hexdigest())
    with pytest.raises(CostModelError, match="model.json: not a readable XGBoost model"):
        XGBCostModel.load(path)
