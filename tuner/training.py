"""The cost model's training set, owned by the tuning loop, and the scorer strategies use.

At the start of a run the ``Trainer`` reads the newest records of the backend in
the database (this model's tasks and any other's: transfer) with their features,
and fits the cost model; after each batch it extracts the new configs' features,
stores them in the database, adds the rows and fits again. Strategies only ask it
to ``score`` configs. The cost model is any object with the scikit-learn contract
``fit(X, y, groups) -> self`` and ``predict(X)`` (``costmodel.CostModel``), where
``y`` is throughput (FLOPs per second; 0 for a failed candidate) and a higher
prediction means faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SettingsError
from .records import ErrorKind


@dataclass(frozen=True)
class TrainingSettings:
    min_rows: int = 24  # fewest rows (with more than one distinct throughput) to fit the model on
    transfer_rows: int = 3000  # the newest records of the backend read from the database at the start

    def __post_init__(self):
        if self.min_rows < 1 or self.transfer_rows < 0:
            raise SettingsError(f"min_rows must be at least 1 and transfer_rows at least 0, got {self.min_rows} "
                                f"and {self.transfer_rows}")


class Trainer:
    """Fits ``cost_model`` on every measurement of ``backend`` and scores candidates with it. A model
    fitted already (loaded from a file: scikit-learn's mark, an attribute ending in ``_``) scores
    until the run has enough rows to fit it again."""

    def __init__(self, backend, database, cost_model, settings: TrainingSettings = TrainingSettings()):
        self.backend = backend
        self.database = database
        self.cost_model = cost_model
        self.settings = settings
        self.trained = any(name.endswith("_") and not name.startswith("__") for name in getattr(cost_model, "__dict__", {}))
        self.features, self.throughputs, self.groups = [], [], []
        self.transferred_rows = 0
        self.scored = 0
        self._memo: dict = {}  # (workload key, config JSON) -> feature row

    def start(self, states) -> None:
        """Read the backend's records from the database (features stored or extracted now) and fit."""
        from .features import record_rows

        own = {state.task.workload_key: state for state in states}
        rows = record_rows(self.database, self.backend, limit=self.settings.transfer_rows, states=own)
        for workload_key, features, throughput in rows:
            self._add(workload_key, features, throughput)
        self.transferred_rows = len(rows)
        self._fit()

    def observe(self, state, configs, results) -> None:
        """Add a measured batch (features stored in the database too) and fit again."""
        from .features import store_features

        key = state.task.workload_key
        rows = self.feature_rows(state, configs)
        store_features(self.database, self.backend, key, configs, rows)
        for row, result in zip(rows, results):
            if row is not None and result.error_kind != ErrorKind.INVALID_CONFIG:
                self._add(key, row, state.task.flops / result.mean_s if result.ok else 0.0)
        self._fit()

    def feature_rows(self, state, configs) -> list:
        """Feature rows of ``configs`` of ``state``'s task (None where a config does not fit), memoized."""
        from .features import candidate_features

        return candidate_features(state, configs, self.backend, self._memo)

    def score(self, state, configs) -> list:
        """(score, config) for each config that has features, in the given order; higher is faster."""
        rows = self.feature_rows(state, configs)
        usable = [(config, row) for config, row in zip(configs, rows) if row is not None]
        if not usable:
            return []
        self.scored += len(usable)
        scores = self.cost_model.predict(np.stack([row for _, row in usable]))
        return [(float(score), config) for (config, _), score in zip(usable, scores)]

    def describe(self) -> dict:
        return {"cost_model": type(self.cost_model).__name__, "transferred_rows": self.transferred_rows,
                "training_rows": len(self.features), "model_trained": self.trained, "scored_candidates": self.scored}

    def _add(self, group: str, features, throughput: float) -> None:
        self.features.append(np.asarray(features, dtype=np.float32))
        self.throughputs.append(float(throughput))
        self.groups.append(group)

    def _fit(self) -> None:
        if len(self.features) < self.settings.min_rows or len(set(self.throughputs)) < 2:
            return
        self.cost_model.fit(np.stack(self.features), np.asarray(self.throughputs), np.asarray(self.groups))
        self.trained = True
