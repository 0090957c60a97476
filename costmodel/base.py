"""The cost-model role: the scikit-learn contract, plus save/load.

``fit(X, y, groups) -> self`` learns from feature rows ``X``, measured throughput
``y`` (higher is faster; 0 for a failed candidate) and the task (group) of each
row; ``predict(X)`` scores rows (higher = predicted faster; only the order within
a task matters); ``save(path)`` and the class's ``load(path)`` keep a model in a
documented, unpickled format. ``create_cost_model(kind)`` lists the kinds;
``load_cost_model(path)`` reads a saved model of any kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import CostModelError
from .model import KIND as XGB_KIND, XGBCostModel, sidecar_path


@runtime_checkable
class CostModel(Protocol):
    def fit(self, X, y, groups) -> "CostModel": ...

    def predict(self, X) -> np.ndarray: ...

    def save(self, path) -> None: ...


class RandomCostModel:
    """Random scores: the baseline a learned model has to beat, and a stand-in in tests."""

    KIND = "costmodel.RandomCostModel"

    def __init__(self, *, seed: int = 0):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def fit(self, X, y, groups, **_) -> "RandomCostModel":
        return self

    def predict(self, X) -> np.ndarray:
        return self._rng.random(len(X))

    def save(self, path, **_) -> None:
        Path(path).write_text(json.dumps({"kind": self.KIND, "seed": self.seed}) + "\n")

    @classmethod
    def load(cls, path) -> "RandomCostModel":
        data = _read_json(Path(path))
        if data.get("kind") != cls.KIND or not isinstance(data.get("seed"), int):
            raise CostModelError(f"{path}: not a saved {cls.KIND}")
        return cls(seed=data["seed"])


COST_MODELS = {"xgb": XGBCostModel, "random": RandomCostModel}


def create_cost_model(kind: str = "xgb", **params):
    if kind not in COST_MODELS:
        raise CostModelError(f"unknown cost model {kind!r}; choose one of {', '.join(COST_MODELS)}")
    return COST_MODELS[kind](**params)


def load_cost_model(path):
    """A cost model saved by any kind's ``save``: XGBoost's file with its sidecar, or a random model's
    JSON. Raises CostModelError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CostModelError(f"{path}: no such cost model file")
    if sidecar_path(path).is_file() or path.suffix == ".ubj":
        return XGBCostModel.load(path)
    data = _read_json(path)
    if data.get("kind") == RandomCostModel.KIND:
        return RandomCostModel.load(path)
    raise CostModelError(f"{path}: not a saved cost model (a {XGB_KIND} is saved with its sidecar "
                         f"{sidecar_path(path).name}; kinds: {', '.join(COST_MODELS)})")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CostModelError(f"{path}: not a readable cost model file ({err})") from None
    if not isinstance(data, dict):
        raise CostModelError(f"{path}: not a saved cost model")
    return data
