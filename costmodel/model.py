"""An XGBoost cost model with the scikit-learn contract.

``fit(X, y, groups)`` learns from measured throughput ``y`` (higher is better,
e.g. FLOPs per second; 0 for a failed candidate) of rows grouped by task.
Targets are divided by their group's best value, so tasks of any speed weigh
alike. A ranking objective ("rank:pairwise", the default) only compares rows of
one group (XGBoost's ``qid``); a regression objective ("reg:squarederror") fits
the normalized values. The ranking objective draws its pairs at random within a
group (``lambdarank_pair_method="mean"``), which ranked held-out configs best
(docs/benchmarks.md). XGBoost's own early stopping watches the pairwise accuracy on a held-out
``validation_fraction`` of every group's rows and picks the number of rounds;
with ``refit`` (the default) the final booster is then trained on all rows for
that many rounds. ``early_stopping_rounds=None`` trains ``n_estimators``
rounds on all rows. ``fit`` retrains from scratch on the rows it is given: pass
all rows measured so far. The defaults train in about a second on a few thousand
rows; larger trees ranked about as well in three times the time.

``nthread`` defaults to 1: on a 2-core machine that is busy with other work,
XGBoost's OpenMP threads spin-wait, and 2 threads train slower than 1.

``save(path)`` writes the booster in XGBoost's JSON (``.json``) or UBJSON
(``.ubj``) format and a sidecar ``path + ".meta.json"`` (kind, format and
feature versions, width, parameters, backend, the booster's SHA-256). ``load``
refuses a file whose sidecar is missing, foreign, of another feature version or
written for another booster file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import xgboost as xgb

from tuner.errors import error_line

from .errors import CostModelError
from .features import FEATURE_VERSION
from .metrics import ordered_pairs, pair_score

KIND = "costmodel.XGBCostModel"
FORMAT_VERSION = 1
OBJECTIVES = ("rank:pairwise", "reg:squarederror")
PAIR_METHODS = ("mean", "topk")
BOOSTER_SUFFIXES = (".json", ".ubj")
_MIN_VALID_ROWS_PER_GROUP = 2


def sidecar_path(path) -> Path:
    return Path(str(path) + ".meta.json")


def group_codes(groups, n_rows: int) -> np.ndarray:
    """Integer codes of task ids (ints or strings; compared by ``str``)."""
    groups = np.asarray(groups)
    if groups.shape != (n_rows,):
        raise CostModelError(f"groups must have one entry per row ({n_rows}), got shape {groups.shape}")
    return np.unique(groups.astype(str), return_inverse=True)[1].astype(np.int64)


def normalize_per_group(y: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``y`` divided by its group's maximum (a group whose maximum is 0 stays 0)."""
    group_max = np.zeros(codes.max() + 1)
    np.maximum.at(group_max, codes, y)
    scale = group_max[codes]
    return np.divide(y, scale, out=np.zeros_like(y, dtype=np.float64), where=scale > 0)


def _check_features(X, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise CostModelError(f"X must be a non-empty 2-D array, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise CostModelError(f"X has {X.shape[1]} features but the model was fitted with {n_features}")
    if not np.all(np.isfinite(X)):
        raise CostModelError("X contains NaN or infinite values")
    return X


def _check_targets(y, n_rows: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.shape != (n_rows,):
        raise CostModelError(f"y must have one value per row ({n_rows}), got shape {y.shape}")
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise CostModelError("y must be finite throughput values >= 0 (use 0 for a failed candidate)")
    return y


class XGBCostModel:
    """Predicts a score per candidate row; higher means predicted faster."""

    def __init__(self, *, objective: str = "rank:pairwise", n_estimators: int = 200, max_depth: int = 5,
                 learning_rate: float = 0.1, min_child_weight: float = 1.0, subsample: float = 1.0,
                 colsample_bytree: float = 1.0, colsample_bynode: float = 1.0,
                 max_bin: int = 32, early_stopping_rounds: int | None = 30,
                 validation_fraction: float = 0.2, refit: bool = True, lambdarank_pair_method: str = "mean",
                 lambdarank_num_pair_per_sample: int = 64, seed: int = 0, nthread: int = 1):
        self.objective = objective
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.colsample_bynode = colsample_bynode
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.lambdarank_pair_method = lambdarank_pair_method
        self.lambdarank_num_pair_per_sample = lambdarank_num_pair_per_sample
        self.seed = seed
        self.nthread = nthread

    _PARAM_NAMES = ("objective", "n_estimators", "max_depth", "learning_rate", "min_child_weight", "subsample",
                    "colsample_bytree", "colsample_bynode", "max_bin", "early_stopping_rounds",
                    "validation_fraction", "refit", "lambdarank_pair_method", "lambdarank_num_pair_per_sample",
                    "seed", "nthread")

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._PARAM_NAMES}

    def set_params(self, **params) -> XGBCostModel:
        unknown = sorted(set(params) - set(self._PARAM_NAMES))
        if unknown:
            raise CostModelError(f"unknown parameter(s) {unknown}; the parameters are {list(self._PARAM_NAMES)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"XGBCostModel({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _check_params(self) -> None:
        if self.objective not in OBJECTIVES:
            raise CostModelError(f"objective {self.objective!r} is not supported; use one of {list(OBJECTIVES)}")
        if self.lambdarank_pair_method not in PAIR_METHODS:
            raise CostModelError(f"lambdarank_pair_method {self.lambdarank_pair_method!r} is not supported; "
                                 f"use one of {list(PAIR_METHODS)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise CostModelError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if int(self.n_estimators) < 1 or int(self.nthread) < 1:
            raise CostModelError(f"n_estimators and nthread must be >= 1, got {self.n_estimators!r} "
                                 f"and {self.nthread!r}")

    def _xgb_params(self) -> dict:
        params = {"objective": self.objective, "eta": self.learning_rate, "max_depth": self.max_depth,
                  "min_child_weight": self.min_child_weight, "subsample": self.subsample,
                  "colsample_bytree": self.colsample_bytree, "colsample_bynode": self.colsample_bynode,
                  "max_bin": self.max_bin, "seed": self.seed, "nthread": self.nthread, "tree_method": "hist",
                  "disable_default_eval_metric": 1}
        if self.objective.startswith("rank:"):
            params.update(lambdarank_pair_method=self.lambdarank_pair_method,
                          lambdarank_num_pair_per_sample=self.lambdarank_num_pair_per_sample)
        return params

    def _split(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row indices for training and for early stopping (per group, a random
        ``validation_fraction`` of its rows when that leaves two on each side)."""
        rows = np.arange(codes.size)
        if not self.early_stopping_rounds or self.validation_fraction <= 0:
            return rows, rows[:0]
        rng = np.random.default_rng(self.seed)
        valid = []
        for code in np.unique(codes):
            members = rows[codes == code]
            count = int(round(self.validation_fraction * members.size))
            if count >= _MIN_VALID_ROWS_PER_GROUP and members.size - count >= 2:
                valid.append(rng.choice(members, size=count, replace=False))
        valid = np.sort(np.concatenate(valid)) if valid else rows[:0]
        return np.setdiff1d(rows, valid), valid

    def _matrix(self, X, target, codes, rows) -> tuple[xgb.DMatrix, np.ndarray]:
        rows = rows[np.argsort(codes[rows], kind="stable")]  # XGBoost needs rows sorted by qid
        qid = codes[rows] if self.objective.startswith("rank:") else None
        return xgb.DMatrix(X[rows], label=target[rows], qid=qid, nthread=self.nthread), rows

    def _train(self, X, target, codes) -> tuple[xgb.Booster, int]:
        """Early stopping on held-out rows picks the number of rounds; with ``refit``
        the final booster is then trained on all rows for that many rounds. Without
        held-out rows that have an order to learn, it trains ``n_estimators`` rounds."""
        all_rows = np.arange(codes.size)
        train, valid = self._split(codes)
        valid_matrix, valid_rows = self._matrix(X, target, codes, valid)
        pairs = ordered_pairs(target[valid_rows], codes[valid_rows])
        if pairs[2].size == 0:
            matrix, _ = self._matrix(X, target, codes, all_rows)
            return xgb.train(self._xgb_params(), matrix, int(self.n_estimators)), int(self.n_estimators)

        def valid_pairwise_accuracy(predictions, _matrix):
            return "pairwise_accuracy", pair_score(pairs, predictions)

        train_matrix, _ = self._matrix(X, target, codes, train)
        booster = xgb.train(self._xgb_params(), train_matrix, int(self.n_estimators),
                            evals=[(valid_matrix, "valid")], custom_metric=valid_pairwise_accuracy,
                            maximize=True, early_stopping_rounds=int(self.early_stopping_rounds),
                            verbose_eval=False)
        rounds = booster.best_iteration + 1
        if not self.refit:
            return booster[:rounds], rounds
        matrix, _ = self._matrix(X, target, codes, all_rows)
        return xgb.train(self._xgb_params(), matrix, rounds), rounds

    def fit(self, X, y, groups, *, backend: str | None = None) -> XGBCostModel:
        """Train on all rows given (from scratch). ``backend`` is recorded and saved."""
        self._check_params()
        X = _check_features(X)
        y = _check_targets(y, X.shape[0])
        codes = group_codes(groups, X.shape[0])
        booster, rounds = self._train(X, normalize_per_group(y, codes), codes)
        self.booster_ = booster
        self.n_estimators_ = rounds
        self.n_features_in_ = X.shape[1]
        self.feature_version_ = FEATURE_VERSION
        self.backend_ = backend
        return self

    def _check_fitted(self) -> None:
        if getattr(self, "booster_", None) is None:
            raise CostModelError("this XGBCostModel is not fitted yet; call fit(X, y, groups) or "
                                 "XGBCostModel.load(path) first")

    def predict(self, X) -> np.ndarray:
        """Scores of the rows of ``X`` (higher = predicted faster), float64."""
        self._check_fitted()
        X = _check_features(X, self.n_features_in_)
        return self.booster_.predict(xgb.DMatrix(X, nthread=self.nthread)).astype(np.float64)

    def save(self, path, *, backend: str | None = None) -> None:
        """Write the booster to ``path`` (.json or .ubj) and the sidecar next to it."""
        self._check_fitted()
        path = Path(path)
        if path.suffix not in BOOSTER_SUFFIXES:
            raise CostModelError(f"{path}: a cost model file must end in one of {list(BOOSTER_SUFFIXES)}")
        raw = self.booster_.save_raw(raw_format=path.suffix[1:])
        meta = {"kind": KIND, "format_version": FORMAT_VERSION, "feature_version": self.feature_version_,
                "n_features": self.n_features_in_, "n_estimators": self.n_estimators_,
                "params": self.get_params(), "backend": backend if backend is not None else self.backend_,
                "booster_sha256": hashlib.sha256(raw).hexdigest(), "xgboost_version": xgb.__version__}
        _write_atomic(path, bytes(raw))
        _write_atomic(sidecar_path(path), (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path, *, feature_version=FEATURE_VERSION) -> XGBCostModel:
        """A model saved by ``save``; raises CostModelError naming the file and the problem."""
        path = Path(path)
        if not path.is_file():
            raise CostModelError(f"{path}: no such cost model file")
        raw = path.read_bytes()
        meta = _read_sidecar(path, raw, feature_version)
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError as err:
            raise CostModelError(f"{path}: not a readable XGBoost model ({error_line(err)})") from err
        if booster.num_features() != meta["n_features"]:
            raise CostModelError(f"{path}: the booster has {booster.num_features()} features but its sidecar "
                                 f"says {meta['n_features']}")
        try:
            model = cls(**meta["params"])
        except TypeError as err:
            raise CostModelError(f"{sidecar_path(path)}: bad params ({err})") from err
        model.booster_ = booster
        model.n_estimators_ = int(meta.get("n_estimators", booster.num_boosted_rounds()))
        model.n_features_in_ = int(meta["n_features"])
        model.feature_version_ = meta["feature_version"]
        model.backend_ = meta.get("backend")
        return model


def _read_sidecar(path: Path, raw: bytes, feature_version) -> dict:
    """The checked sidecar of the booster file ``path`` whose bytes are ``raw``."""
    meta_path = sidecar_path(path)
    if not meta_path.is_file():
        raise CostModelError(f"{path}: its sidecar {meta_path.name} is missing; a cost model is saved with "
                             f"XGBCostModel.save, which writes both")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CostModelError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        kind = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise CostModelError(f"{meta_path}: holds a {kind!r}, not a {KIND!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CostModelError(f"{meta_path}: format version {meta.get('format_version')!r} is not supported "
                             f"(this costmodel reads version {FORMAT_VERSION})")
    if meta.get("feature_version") != feature_version:
        raise CostModelError(f"{path}: trained on feature version {meta.get('feature_version')!r}, but the "
                             f"features are now version {feature_version!r}; retrain the model")
    missing = sorted({"n_features", "params", "booster_sha256"} - set(meta))
    if missing or not isinstance(meta["params"], dict):
        raise CostModelError(f"{meta_path}: missing or bad field(s) {missing or ['params']}")
    if meta["booster_sha256"] != hashlib.sha256(raw).hexdigest():
        raise CostModelError(f"{path}: the file does not match its sidecar {meta_path.name} (another "
                             f"model's file, or changed after saving)")
    return meta


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
