"""Candidate generators and batch picks that model-guided search is composed of.

Generators make candidates for the cost model to score: the neighbourhood of the
best config, mutations of the best configs, random samples, and other tasks' best
configs fitted to this task (``Transfer``); ``evolve`` scores them (and mutates the
top-scored for a few generations when asked). Picks fill a batch (an ``Offer``):
``exploit`` takes the top-scored, spread over families; ``sweep`` the best configs'
neighbours in knobs of few values; ``explore_families`` random configs of the best
measured families; ``vetted`` the better-scored of a few random draws.

``model`` is a scorer: ``model.score(state, configs) -> [(score, config)]``, higher
is faster (``training.Trainer``, or a test's fake).
"""

from __future__ import annotations

import math


def score_into(model, state, candidates, pool: dict) -> None:
    """Score the candidates not yet in ``pool`` (config JSON -> (score, config)) and add them."""
    fresh = list({c.to_json(): c for c in candidates if c.to_json() not in pool}.values())
    if fresh:
        for score, config in model.score(state, fresh):
            pool[config.to_json()] = (score, config)


def best_first(pool: dict) -> list:
    """The (score, config) pairs of a scored pool, highest score first."""
    return sorted(pool.values(), key=lambda item: -item[0])


def picks(share: float, rng) -> int:
    """``share`` picks on average: its whole part, and one more with the probability of its fraction
    (rounding would drop a share below one half from every batch)."""
    whole = math.floor(share)
    return whole + int(rng.random() < share - whole)


# -- generators --------------------------------------------------------------------------------
def neighbourhood(state, center, steps: int) -> list:
    """The configs up to ``steps`` one-knob changes (``SearchSpace.neighbours``: knobs of few values)
    away from ``center``, without ``center``."""
    if center is None or steps < 1:
        return []
    found = {center.to_json(): center}
    frontier = [center]
    for _ in range(steps):
        step = {c.to_json(): c for config in frontier for c in state.space.neighbours(config)}
        frontier = [c for key, c in step.items() if key not in found]
        found.update((c.to_json(), c) for c in frontier)
    return list(found.values())[1:]


def mutations(state, parents: list, count: int, rng) -> list:
    """``count`` mutations (one or two knobs changed) of ``parents``, in turn."""
    if not parents:
        return []
    return [state.space.mutate(parents[i % len(parents)], rng) for i in range(count)]


def samples(state, count: int, rng) -> list:
    return [state.space.sample(rng) for _ in range(count)]


class Transfer:
    """Other tasks' best configs made to fit a task's space (``SearchSpace.project``): the database's
    other tasks of the backend (``donors``) and the current best of each other task of the run."""

    def __init__(self, donors):
        self.donors = list(donors)
        self._projected: dict = {}  # workload key -> the donors projected into its space

    def candidates(self, state, states) -> list:
        import search_spaces

        key = state.task.workload_key
        if key not in self._projected:
            self._projected[key] = [c for c in map(state.space.project, self.donors) if c is not None]
        current = [search_spaces.Config.from_json(other.best[0][1]) for other in states
                   if other is not state and other.best]
        projected = self._projected[key] + [c for c in map(state.space.project, current) if c is not None]
        return list({c.to_json(): c for c in projected}.values())


def evolve(model, state, candidates: list, rng, generations: int, survivors: int, per_round: int) -> list:
    """Score ``candidates``; then, ``generations`` times, mutate the ``survivors`` top-scored into
    ``per_round`` more and score those. The unmeasured ones, best score first."""
    pool: dict = {}
    for generation in range(generations + 1):
        score_into(model, state, candidates, pool)
        if generation == generations or not pool:
            break
        ranked = [config for _, config in best_first(pool)[:survivors]]
        candidates = mutations(state, ranked, per_round, rng)
    return [(score, config) for score, config in best_first(pool) if config.to_json() not in state.seen]


# -- picks -------------------------------------------------------------------------------------
def exploit(offer, scored: list, count: int, family_share: float) -> None:
    """Offer the scored configs, best first, until the offer holds ``count``, at most ``family_share``
    of them from one family (``SearchSpace.family``: a register block, say), then the rest in score
    order if too few families are left: the top picks are often near twins of one config, and a
    second family may hold a faster plateau."""
    cap = max(1, math.ceil(family_share * count))
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


def sweep(offer, model, elites: list, count: int) -> None:
    """Offer the unmeasured one-knob neighbours of the best configs (``elites``, best first) in knobs of
    few values, the best config's first and each config's in score order, until the offer holds
    ``count``: over a few batches every such neighbour of the best is measured, whatever a model
    trained on few rows thinks of it."""
    state = offer.state
    for elite in elites:
        if len(offer.configs) >= count:
            return
        pool: dict = {}
        score_into(model, state, [c for c in state.space.neighbours(elite) if offer.is_new(c.to_json())], pool)
        for _, config in best_first(pool):
            if len(offer.configs) >= count:
                return
            offer(config)


def vetted(offer, model, draw, draws: int) -> None:
    """Offer the best-scored of ``draws`` new configs that ``draw()`` returns: an exploration pick stays
    random but is not the model's surest dud (a build that times out, say)."""
    drawn: dict = {}
    for _ in range(4 * draws):
        if len(drawn) >= draws:
            break
        config = draw()
        if offer.is_new(config.to_json()):
            drawn[config.to_json()] = config
    if not drawn:
        return
    pool: dict = {}
    if len(drawn) > 1:
        score_into(model, offer.state, list(drawn.values()), pool)
    offer(best_first(pool)[0][1] if pool else next(iter(drawn.values())))


def explore_families(offer, model, count: int, families: int, draws: int, rng) -> None:
    """Offer random configs (``vetted``) of the ``families`` best measured families
    (``TaskState.best_families``, ``SearchSpace.sample_family``), one per family in turn, best first,
    until the offer holds ``count``: within a good register block a faster cache tile or loop order
    may lie several mutations away, where a model trained near the best configs does not look.
    Families are ranked by their best measurement, since a task's best configs often share one."""
    import search_spaces

    state = offer.state
    parents = [search_spaces.Config.from_json(config) for config in state.best_families(families)]
    for attempt in range(4 * count):
        if len(offer.configs) >= count or not parents:
            return
        parent = parents[attempt % len(parents)]
        vetted(offer, model, lambda: state.space.sample_family(parent, rng), draws)
