"""Search strategies: which configs of a task to measure next.

* ``RandomSearch``: the default config first, then mutations of the best
  configs found so far and random samples.
* ``ModelGuidedSearch``: an XGBoost cost model, trained on every measurement
  of this backend (records of other tasks and models in the cache included:
  transfer), scores a population evolved from the best configs and random
  samples; each batch measures the predicted best plus a share of random picks,
  and the model is retrained on the results.

A strategy has ``start(states)``, ``propose(state, count, rng) -> [Config]`` and
``observe(state, configs, results)``; it never proposes a config the task has
already measured.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import TunerError


def _config_class():
    import search_spaces

    return search_spaces.Config


class _Offer:
    """Collects new configs, skipping those measured before or already offered."""

    def __init__(self, state):
        self.state = state
        self.configs = []
        self.keys = set()

    def __call__(self, config) -> bool:
        key = config.to_json()
        if key in self.state.seen or key in self.keys:
            return False
        self.configs.append(config)
        self.keys.add(key)
        return True


class RandomSearch:
    name = "random"

    def __init__(self, mutate_share: float = 0.5):
        self.mutate_share = mutate_share

    def start(self, states) -> None:
        pass

    def propose(self, state, count: int, rng) -> list:
        offer = _Offer(state)
        if not state.seen:
            offer(state.space.default_config())
        mutations = round(count * self.mutate_share) if state.best else 0
        for attempt in range(20 * count):
            if len(offer.configs) >= count:
                break
            if len(offer.configs) < mutations and attempt < 10 * count:
                _, parent = state.best[rng.integers(len(state.best))]
                offer(state.space.mutate(_config_class().from_json(parent), rng))
            else:
                offer(state.space.sample(rng))
        return offer.configs

    def observe(self, state, configs, results) -> None:
        pass

    def describe(self) -> dict:
        return {"strategy": self.name}


class ModelGuidedSearch:
    """Evolutionary search scored by a cost model that is retrained after every batch."""

    name = "model"

    def __init__(self, backend, cache, *, population: int = 96, generations: int = 2, explore_share: float = 0.25,
                 min_rows: int = 24, transfer_rows: int = 3000, seed: int = 0):
        self.backend = backend
        self.cache = cache
        self.population = population
        self.generations = generations
        self.explore_share = explore_share
        self.min_rows = min_rows
        self.transfer_rows = transfer_rows
        self.seed = seed
        self.random = RandomSearch()
        self.rows = _Rows()
        self.model_ = None
        self.transferred_rows_ = 0
        self._memo: dict = {}  # (workload key, config JSON) -> feature row

    # -- life cycle -----------------------------------------------------------------------
    def start(self, states) -> None:
        """Train on what the cache holds for this backend: this model's tasks and any other task."""
        from .features import record_rows

        rows = record_rows(self.cache, self.backend, limit=self.transfer_rows,
                           states={s.task.workload_key: s for s in states})
        for workload_key, features, throughput in rows:
            self.rows.add(workload_key, features, throughput)
        self.transferred_rows_ = len(self.rows)
        self._retrain()

    def observe(self, state, configs, results) -> None:
        from .features import candidate_features, store_features

        features = candidate_features(state, configs, self.backend, self._memo)
        store_features(self.cache, self.backend, state.task.workload_key, configs, features)
        for config, row, result in zip(configs, features, results):
            if row is not None and result.error_kind != "invalid_config":
                throughput = state.task.flops / result.mean_s if result.ok else 0.0
                self.rows.add(state.task.workload_key, row, throughput)
        self._retrain()

    def describe(self) -> dict:
        return {"strategy": self.name, "transferred_rows": self.transferred_rows_, "training_rows": len(self.rows),
                "model_trained": self.model_ is not None}

    def _retrain(self) -> None:
        from costmodel import XGBCostModel

        if len(self.rows) < self.min_rows or not self.rows.has_spread():
            return
        X, y, groups = self.rows.arrays()
        self.model_ = XGBCostModel(seed=self.seed).fit(X, y, groups, backend=self.backend.key)

    # -- proposing ------------------------------------------------------------------------
    def propose(self, state, count: int, rng) -> list:
        if self.model_ is None:
            return self.random.propose(state, count, rng)
        offer = _Offer(state)
        if not state.seen:
            offer(state.space.default_config())
        scored = self._evolve(state, rng)
        explore = math.ceil(self.explore_share * count)
        for _, config in scored:
            if len(offer.configs) >= count - explore:
                break
            offer(config)
        for _ in range(20 * count):
            if len(offer.configs) >= count:
                break
            offer(state.space.sample(rng))
        return offer.configs

    def _evolve(self, state, rng) -> list:
        """A population from random samples and mutations of the best, improved for a few generations."""
        config_class = _config_class()
        parents = [config_class.from_json(config) for _, config in state.best]
        pool = {}
        candidates = [state.space.sample(rng) for _ in range(self.population // 2)]
        candidates += [state.space.mutate(parents[i % len(parents)], rng)
                       for i in range(self.population - len(candidates))] if parents else []
        for generation in range(self.generations + 1):
            self._score(state, candidates, pool)
            if generation == self.generations:
                break
            elite = [config for _, config in sorted(pool.values(), key=lambda item: -item[0])[:8]]
            candidates = [state.space.mutate(elite[i % len(elite)], rng) for i in range(self.population // 2)]
        ranked = sorted(pool.values(), key=lambda item: -item[0])
        return [(score, config) for score, config in ranked if config.to_json() not in state.seen]

    def _score(self, state, candidates, pool: dict) -> None:
        from .features import candidate_features

        fresh = [c for c in candidates if c.to_json() not in pool]
        if not fresh:
            return
        features = candidate_features(state, fresh, self.backend, self._memo)
        usable = [(c, f) for c, f in zip(fresh, features) if f is not None]
        if not usable:
            return
        scores = self.model_.predict(np.stack([f for _, f in usable]))
        for (config, _), score in zip(usable, scores):
            pool[config.to_json()] = (float(score), config)


class _Rows:
    """The training set: feature rows, throughputs and their task (group)."""

    def __init__(self):
        self.features, self.throughputs, self.groups = [], [], []

    def __len__(self) -> int:
        return len(self.features)

    def add(self, group: str, features, throughput: float) -> None:
        self.features.append(np.asarray(features, dtype=np.float32))
        self.throughputs.append(float(throughput))
        self.groups.append(group)

    def has_spread(self) -> bool:
        return len(set(self.throughputs)) > 1

    def arrays(self):
        return np.stack(self.features), np.asarray(self.throughputs), np.asarray(self.groups)


def create_search(kind: str, backend, cache, seed: int = 0, mutate_share: float = 0.5, population: int = 96):
    if kind == "random":
        return RandomSearch(mutate_share)
    if kind == "model":
        return ModelGuidedSearch(backend, cache, seed=seed, population=population)
    raise TunerError(f"unknown search strategy {kind!r}; choose one of random, model")
