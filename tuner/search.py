"""Search strategies: which configs of a task to measure next.

* ``RandomSearch``: the default config (and those tied with it) first, then
  mutations of the best configs found so far and random samples.
* ``ModelGuidedSearch``: an XGBoost cost model, trained on every measurement
  of this backend (records of other tasks and models in the cache included:
  transfer), scores a population evolved from the best configs, random
  samples and other tasks' best configs fitted to this task; each batch
  measures the predicted best (spread over the configs' families, such as
  register blocks) plus a share of exploration picks (the unmeasured one-knob
  neighbours of the best configs in knobs of few values, random configs of the
  best measured families, and random samples, each the better-scored of two
  draws), and the model is retrained on the results.

A strategy has ``start(states)``, ``propose(state, count, rng) -> [Config]`` and
``observe(state, configs, results)``; it proposes at most ``count`` configs (a task's
tied defaults included) and never one the task has already measured.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .errors import TunerError


def _config_class():
    import search_spaces

    return search_spaces.Config


class _Offer:
    """Collects at most ``count`` new configs, skipping those measured before or already offered; a
    task's first batch starts with its default config and those tied with it (as many as fit)."""

    def __init__(self, state, count: int):
        self.state = state
        self.count = count
        self.configs = []
        self.keys = set()
        if not state.seen:
            for config in state.space.default_configs():
                self(config)

    def is_new(self, key: str) -> bool:
        """Whether the config of JSON ``key`` is neither measured before nor already offered."""
        return key not in self.state.seen and key not in self.keys

    @property
    def full(self) -> bool:
        return len(self.configs) >= self.count

    def __call__(self, config) -> bool:
        key = config.to_json()
        if self.full or not self.is_new(key):
            return False
        self.configs.append(config)
        self.keys.add(key)
        return True


class RandomSearch:
    name = "random"
    batch_size = 16  # configs per batch unless ``TuneSettings.batch_size`` says otherwise

    def __init__(self, mutate_share: float = 0.5):
        self.mutate_share = mutate_share

    def start(self, states) -> None:
        pass

    def propose(self, state, count: int, rng) -> list:
        offer = _Offer(state, count)
        mutations = round(count * self.mutate_share) if state.best else 0
        for attempt in range(20 * count):
            if offer.full:
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
    """Search scored by a cost model that is retrained after every batch.

    Each proposal scores a population: mutations (one or two knobs changed) of the task's
    best measured configs (``TaskState.best``: the tuner keeps ``TuneSettings.top_k`` of
    them, 4 by default), every config up to ``local_steps`` one-knob changes in the knobs of few
    values away from the best one (``_local``), random samples and, for transfer, the best config
    of each other task (of the backend in the cache, and of this run) made to fit this task's space
    (``SearchSpace.project``; they are the parents too while the task has no measurement),
    then ``generations`` rounds of mutating the ``survivors`` configs the model scores
    highest. The default, no further generation, keeps the population next to the best
    measured configs, where a model trained on few rows is trustworthy: in an A/B in turns,
    128 trials each, it beat 16 parents and 2 generations on 3 of 3 matmul seeds (by 1.5-4.3 %)
    and 2 of 3 conv seeds. How many candidates are scored adapts to the task: scoring may
    take ``score_share`` of the time the task's last batch took to measure, within
    ``population`` and ``max_population`` (scoring a conv candidate costs ~30 ms, measuring
    one ~0.5 s; a 1024^3 matmul ~5 ms and ~2 s). The configs two small-knob changes from the best
    (~100 for the 3x3 conv, ~20 for the matmul) are scored whatever the mutations drew: the
    fastest conv schedules differ from a good one in two or three such knobs at once (the split
    of the input channels, unrolling, write-back). In an A/B in turns (128 trials, seeds 0-2, the
    best after 128), conv 0.4719 / 0.4966 / 0.4780 ms against 0.4836 / 0.4977 / 0.4801 without
    them; matmul 5.0594 / 5.0061 / 5.2189 against 5.2192 / 4.8839 / 4.9753.

    ``explore_share`` of each batch is not the model's top picks: ``sweep_share`` of those
    are the best configs' unmeasured neighbours in the knobs of few values (``_sweep``),
    ``family_explore_share`` random configs of the ``explore_families`` best measured families
    (ranked by each family's best measurement, ``TaskState.best_families``), the rest random; each
    random pick is the best-scored of ``explore_draws`` random configs (``_vetted``). A share
    that comes to a fraction of a pick is drawn with that probability in each batch (``_picks``):
    rounded, the family picks (a quarter of 2) were none at all in batches of 8, and drawn, model-
    guided search's best after 128 matmul trials was 9.978 / 10.074 / 10.019 ms against 10.260 /
    11.251 / 10.245 (A/B in turns, seeds 0-2); on conv 1.0547 / 1.0543 / 1.0314 against 1.0571 /
    1.0293 / 1.0409.

    The shares come to 4 exploration picks in a batch of 8: one neighbour sweep, one family pick and
    two random picks (with a share of 0.2, half of it swept, it was half a random pick a batch). On a
    Zen 3 (AVX2), the default register block runs 1.5x slower than the best matmul schedules found
    (29 ms against 19, loaded 12 times each in turns). Those lie far from the defaults (a reduction
    chunk of 4 or 8, a block of one row or no explicit vector), and random search reaches them by
    sampling (16.6 ms at its 28th trial, seed 0). Model-guided search's best after 128 trials, seed
    0, against random search's 15.68 ms after 512: 18.75 ms with 4 exploration picks, 22.54 with 3
    (one and a quarter random), 28.39 after 40 trials with 2 when that run was stopped. Those
    figures predate matmul weights packed into panels (``search_spaces/layout.py``): with them the
    default runs 11.8 ms, every search's best lies within 5 % of it, and model-guided search's best
    after 128 trials was 11.29 / 11.12 / 11.65 ms against random search's 11.15 / 11.15 / 11.19
    after 512 (seeds 0-2, in turns; measured again, model / random 1.010 / 0.993 / 1.050).
    """

    name = "model"
    # Retrained after every batch, so smaller batches let each pick learn from more measurements: 8
    # against 16 in an A/B in turns (128 trials, seeds 0-2, the best after 128): conv 1.0472 / 1.0322 /
    # 1.0282 ms against 1.0516 / 1.0347 / 1.0378, matmul 10.0707 / 9.8418 / 10.1443 against 10.1079 /
    # 10.1237 / 10.0960.
    batch_size = 8

    def __init__(self, backend, cache, *, population: int = 192, max_population: int = 1024, generations: int = 0,
                 survivors: int = 16, explore_share: float = 0.5, family_share: float = 0.5,
                 sweep_share: float = 0.25, family_explore_share: float = 0.25, explore_families: int = 3,
                 explore_draws: int = 2, local_steps: int = 2, score_share: float = 1.0,
                 min_rows: int = 24, transfer_rows: int = 3000, max_donors: int = 256, seed: int = 0):
        self.backend = backend
        self.cache = cache
        self.population = population
        self.max_population = max(population, max_population)
        self.generations = generations
        self.survivors = survivors
        self.explore_share = explore_share
        self.family_share = family_share
        self.sweep_share = sweep_share
        self.family_explore_share = family_explore_share
        self.explore_families = explore_families
        self.explore_draws = max(1, explore_draws)
        self.local_steps = local_steps
        self.score_share = score_share
        self.min_rows = min_rows
        self.transfer_rows = transfer_rows
        self.max_donors = max_donors
        self.seed = seed
        self.random = RandomSearch()
        self.rows = _Rows()
        self.model_ = None
        self.transferred_rows_ = 0
        self.scored_ = 0
        self._memo: dict = {}  # (workload key, config JSON) -> feature row
        self._sizes: dict = {}  # workload key -> population size for its next proposal
        self._timing: dict = {}  # workload key -> (proposal end time, seconds per scored candidate)
        self._donors: list = []  # best configs of the backend's other tasks in the cache
        self._projected: dict = {}  # workload key -> the donors projected into its space
        self._states: list = []  # this run's tasks, whose best configs are donors to each other

    # -- life cycle -----------------------------------------------------------------------
    def start(self, states) -> None:
        """Train on what the cache holds for this backend: this model's tasks and any other task."""
        from .features import record_rows

        own = {s.task.workload_key: s for s in states}
        records = list(self.cache.records(self.backend.key))
        rows = record_rows(self.cache, self.backend, limit=self.transfer_rows, states=own, records=records)
        for workload_key, features, throughput in rows:
            self.rows.add(workload_key, features, throughput)
        self.transferred_rows_ = len(self.rows)
        self._donors = self._donor_configs(set(own))
        self._states = list(states)
        self._retrain()

    def _donor_configs(self, own: set) -> list:
        """The best config of each other task of this backend in the cache (at most ``max_donors``)."""
        config_class = _config_class()
        donors = []
        for row in self.cache.summary():
            if row["backend_key"] != self.backend.key or row["workload_key"] in own or row["best_s"] is None:
                continue
            record = self.cache.best(self.backend.key, row["workload_key"])
            try:
                donors.append(config_class.from_json(record.config))
            except ValueError:  # InvalidConfigError included: a record of an older space
                continue
        return donors[:self.max_donors]

    def observe(self, state, configs, results) -> None:
        from .features import candidate_features, store_features

        key = state.task.workload_key
        self._adapt(key)
        features = candidate_features(state, configs, self.backend, self._memo)
        store_features(self.cache, self.backend, key, configs, features)
        for config, row, result in zip(configs, features, results):
            if row is not None and result.error_kind != "invalid_config":
                throughput = state.task.flops / result.mean_s if result.ok else 0.0
                self.rows.add(key, row, throughput)
        self._retrain()

    def describe(self) -> dict:
        return {"strategy": self.name, "transferred_rows": self.transferred_rows_, "training_rows": len(self.rows),
                "transferred_configs": len(self._donors), "model_trained": self.model_ is not None,
                "scored_candidates": self.scored_}

    def _adapt(self, key: str) -> None:
        """Size the task's next population from how long its last batch took to measure."""
        if key not in self._timing:
            return
        proposed_at, per_candidate_s = self._timing.pop(key)
        measure_s = time.perf_counter() - proposed_at
        if per_candidate_s > 0:
            size = int(self.score_share * measure_s / per_candidate_s)
            self._sizes[key] = min(self.max_population, max(self.population, size))

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
        offer = _Offer(state, count)
        started = time.perf_counter()
        elites = [_config_class().from_json(config) for _, config in state.best]  # best measured first
        scored = self._evolve(state, elites, rng)
        if scored:
            now = time.perf_counter()
            self._timing[state.task.workload_key] = (now, (now - started) / len(scored))
        explore = math.ceil(self.explore_share * count)
        self._exploit(offer, scored, count - explore)
        self._sweep(offer, state, elites, len(offer.configs) + math.ceil(self.sweep_share * explore))
        self._explore_families(offer, state, len(offer.configs) + _picks(self.family_explore_share * explore, rng), rng)
        for _ in range(20 * count):
            if offer.full:
                break
            self._vetted(offer, state, lambda: state.space.sample(rng))
        return offer.configs

    def _vetted(self, offer, state, draw) -> None:
        """Offer the best-scored of ``explore_draws`` new configs that ``draw()`` returns (a random
        sample, a random config of a family): an exploration pick stays random but is not the model's
        surest dud. The duds that cost most are builds that time out (LLVM on a huge unrolled body,
        20 s each): of ResNet-18's 11 in a 1,500-trial run, a model trained on the other tasks' records
        ranked each among the bottom 6 % of its task's measured configs."""
        drawn: dict = {}
        for _ in range(4 * self.explore_draws):
            if len(drawn) >= self.explore_draws:
                break
            config = draw()
            if offer.is_new(config.to_json()):
                drawn[config.to_json()] = config
        if not drawn:
            return
        pool: dict = {}
        if len(drawn) > 1:
            self._score(state, list(drawn.values()), pool)
        offer(_best_first(pool)[0][1] if pool else next(iter(drawn.values())))

    def _exploit(self, offer, scored, count: int) -> None:
        """Offer the scored configs, best first, until the offer holds ``count``, at most ``family_share``
        of them from one family (``SearchSpace.family``: a register block, say), then the rest in score
        order if too few families are left: the model's top picks are near twins of one elite, and a
        second family may hold a faster plateau."""
        cap = max(1, math.ceil(self.family_share * count))
        taken: dict = {}
        for _, config in scored:
            if len(offer.configs) >= count:
                return
            family = offer.state.space.family(config)
            if taken.get(family, 0) < cap and offer(config):
                taken[family] = taken.get(family, 0) + 1
        for _, config in scored:
            if len(offer.configs) >= count:
                return
            offer(config)

    def _sweep(self, offer, state, elites: list, count: int) -> None:
        """Offer the unmeasured one-knob neighbours of the best measured configs in the knobs of few
        values (``SearchSpace.neighbours``: unrolling, loop order, ...), the best config's first and
        each config's in the model's score order, until the offer holds ``count``. Over a few batches
        every such neighbour of the best config is measured, whatever the model thinks of it: a model
        trained on a few hundred rows mis-ranks some of them (a matmul's best had ``unroll`` 0 where
        the model measured 16, 64 and 512)."""
        for elite in elites:
            if len(offer.configs) >= count:
                return
            pool: dict = {}
            self._score(state, [c for c in state.space.neighbours(elite) if offer.is_new(c.to_json())], pool)
            for _, config in _best_first(pool):
                if len(offer.configs) >= count:
                    return
                offer(config)

    def _explore_families(self, offer, state, count: int, rng) -> None:
        """Offer random configs of the ``explore_families`` best measured families
        (``TaskState.best_families``, ``SearchSpace.sample_family``), one per family in turn, best
        family first, until the offer holds ``count``: the model ranks configs near those it was
        trained on, and within a good register block a faster cache tile or loop order may lie
        several mutations away, where random search finds it and the model does not. The families
        are ranked by their best measurement, not taken from the task's best configs, which are often
        all of one family: in an A/B in turns on conv (128 trials, seeds 0-2) the best after 128
        trials was 1.0426 / 1.0573 / 1.0173 ms against 1.0525 / 1.0573 / 1.0668."""
        parents = [_config_class().from_json(config) for config in state.best_families(self.explore_families)]
        for attempt in range(4 * count):
            if len(offer.configs) >= count or not parents:
                return
            parent = parents[attempt % len(parents)]
            self._vetted(offer, state, lambda: state.space.sample_family(parent, rng))

    def _evolve(self, state, elites: list, rng) -> list:
        """Mutations of the best measured configs (``elites``) and random samples, improved for a few
        generations; the unmeasured ones, best score first."""
        key = state.task.workload_key
        size = self._sizes.get(key, self.population)
        per_round = max(1, size // (self.generations + 1))
        transferred = self.transfer_candidates(state)
        parents = elites or transferred
        mutations = per_round * 3 // 4 if parents else 0
        candidates = list(transferred) + self._local(state, elites)
        candidates += [state.space.mutate(parents[i % len(parents)], rng) for i in range(mutations)]
        candidates += [state.space.sample(rng) for _ in range(per_round - mutations)]
        pool: dict = {}
        for generation in range(self.generations + 1):
            self._score(state, candidates, pool)
            if generation == self.generations or not pool:
                break
            ranked = [config for _, config in _best_first(pool)[:self.survivors]]
            candidates = [state.space.mutate(ranked[i % len(ranked)], rng) for i in range(per_round)]
        return [(score, config) for score, config in _best_first(pool) if config.to_json() not in state.seen]

    def _local(self, state, elites: list) -> list:
        """The configs up to ``local_steps`` one-knob changes (``SearchSpace.neighbours``) away
        from the best measured config."""
        if not elites or self.local_steps < 1:
            return []
        found = {elites[0].to_json(): elites[0]}
        frontier = [elites[0]]
        for _ in range(self.local_steps):
            step = {c.to_json(): c for config in frontier for c in state.space.neighbours(config)}
            frontier = [c for key, c in step.items() if key not in found]
            found.update((c.to_json(), c) for c in frontier)
        return list(found.values())[1:]

    def transfer_candidates(self, state) -> list:
        """Other tasks' best configs made to fit this task's space (transfer of schedules): those
        of the cache's other tasks, and the current best of each other task of this run."""
        key = state.task.workload_key
        if key not in self._projected:
            self._projected[key] = [c for c in map(state.space.project, self._donors) if c is not None]
        config_class = _config_class()
        current = [config_class.from_json(other.best[0][1])
                   for other in self._states if other is not state and other.best]
        projected = self._projected[key] + [c for c in map(state.space.project, current) if c is not None]
        return list({c.to_json(): c for c in projected}.values())

    def _score(self, state, candidates, pool: dict) -> None:
        from .features import candidate_features

        fresh = list({c.to_json(): c for c in candidates if c.to_json() not in pool}.values())
        if not fresh:
            return
        features = candidate_features(state, fresh, self.backend, self._memo)
        usable = [(c, f) for c, f in zip(fresh, features) if f is not None]
        if not usable:
            return
        self.scored_ += len(usable)
        scores = self.model_.predict(np.stack([f for _, f in usable]))
        for (config, _), score in zip(usable, scores):
            pool[config.to_json()] = (float(score), config)


def _picks(share: float, rng) -> int:
    """``share`` picks on average: its whole part, and one more with the probability of its
    fraction. Rounding would drop a share below one half from every batch (a quarter of 2
    exploration picks, in batches of 8)."""
    whole = math.floor(share)
    return whole + int(rng.random() < share - whole)


def _best_first(pool: dict) -> list:
    """The (score, config) pairs of a scored pool (``ModelGuidedSearch._score``), highest score first."""
    return sorted(pool.values(), key=lambda item: -item[0])


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


SEARCHES = (RandomSearch.name, ModelGuidedSearch.name)


def check_search(kind: str) -> None:
    if kind not in SEARCHES:
        raise TunerError(f"unknown search strategy {kind!r}; choose one of {', '.join(SEARCHES)}")


def create_search(kind: str, backend, cache, *, seed: int, mutate_share: float, population: int):
    check_search(kind)
    if kind == RandomSearch.name:
        return RandomSearch(mutate_share)
    return ModelGuidedSearch(backend, cache, seed=seed, population=population)
