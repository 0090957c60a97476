"""Model-guided search: its candidate generators and batch picks, each on its own, and the strategy
composed of them, with fake scorers (no cost model, no measurement)."""

import math

import numpy as np
import pytest

import tuner
from benchmarks.models import mlp_model, small_cnn_model
from fakes import RANDOM, FakeRunner, FlatModel, ScoresFrom, fake
from tuner import generators
from tuner.model_guided import ModelGuidedSearch, ModelGuidedSettings
from tuner.records import MeasureResult
from tuner.strategy import Offer, SearchContext, random_proposals
from tuner.tune import TuneSettings, tune


@pytest.fixture
def model():
    return tuner.load(small_cnn_model(channels=8, size=12))


def _states(model, backend, match=""):
    import search_spaces

    target = backend.tvm_target()
    return [tuner.TaskState(t, search_spaces.space_for(t.func, target)) for t in tuner.partition(model, backend).tasks
            if match in t.name]


def _conv_state(model, backend):
    """A fresh TaskState of the model's first conv2d task."""
    return _states(model, backend, "conv2d")[0]


def _started(settings, states, model, seed=0):
    search = ModelGuidedSearch(settings)
    search.start(states, SearchContext(np.random.default_rng(seed), tuple(states), model))
    return search


def test_transfer_offers_other_tasks_best_configs_fitted_to_the_task(model, backend):
    first, second = _states(model, backend, "conv2d")  # conv1 (3 -> 8 channels) and conv2 (8 -> 8, residual add)
    transfer = generators.Transfer(donors=[])
    assert transfer.candidates(second, [first, second]) == []
    rng = np.random.default_rng(0)
    fitting = [(c, second.space.project(c)) for c in (first.space.sample(rng) for _ in range(20))]
    config, projected = next((c, p) for c, p in fitting if p is not None and c != first.space.default_config())
    for cost, candidate in ((2e-3, first.space.default_config()), (1e-3, config)):
        first.observe(candidate.to_json(), MeasureResult((cost,)))
    assert transfer.candidates(second, [first, second]) == [projected]  # the first task's best, fitted
    assert generators.Transfer(donors=[config]).candidates(second, [second]) == [projected]  # from the database


def test_exploit_spreads_the_model_picks_over_families(model, backend):
    state = _conv_state(model, backend)
    for config in state.space.default_configs():
        state.observe(config.to_json(), MeasureResult((1e-3,)))
    rng = np.random.default_rng(0)
    fresh = {c.to_json(): c for c in (state.space.sample(rng) for _ in range(200)) if c.to_json() not in state.seen}
    families = [state.space.family(c) for c in fresh.values()]
    crowded = max(set(families), key=families.count)
    assert families.count(crowded) >= 6 and len(set(families)) >= 3
    ranked = sorted(fresh.values(), key=lambda c: (state.space.family(c) != crowded, c.to_json()))
    scored = [(float(len(ranked) - i), c) for i, c in enumerate(ranked)]  # the crowded family scores best
    offer = Offer(state, 8)
    generators.exploit(offer, scored, 6, family_share=0.5)
    others = [c for c in ranked if state.space.family(c) != crowded]
    assert offer.configs == ranked[:3] + others[:3]  # half from the best family, then the best of the others
    offer = Offer(state, 8)
    generators.exploit(offer, scored, 6, family_share=1.0)
    assert offer.configs == ranked[:6]


def test_family_exploration_takes_one_config_of_each_best_measured_family_in_turn(model, backend):
    state = _conv_state(model, backend)
    rng = np.random.default_rng(0)
    by_family = {}
    for _ in range(200):
        config = state.space.sample(rng)
        by_family.setdefault(state.space.family(config), config)
    measured = list(by_family.values())[:3]
    assert len(measured) == 3
    for config, cost in zip(measured, (3e-3, 1e-3, 2e-3)):
        state.observe(config.to_json(), MeasureResult((cost,)))
    offer = Offer(state, 8)
    generators.explore_families(offer, FlatModel(), 3, families=3, draws=2, rng=rng)
    assert [state.space.family(c) for c in offer.configs] == [state.space.family(measured[i]) for i in (1, 2, 0)]
    assert not {c.to_json() for c in offer.configs} & state.seen


def test_family_exploration_reaches_a_second_family_when_the_best_configs_share_one(model, backend):
    import search_spaces

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
        state.observe(config.to_json(), MeasureResult((cost,)))
    assert {state.space.family(search_spaces.Config.from_json(c)) for _, c in state.best} == {
        state.space.family(first[0])}
    assert state.best_families(3) == [first[0].to_json(), second[0].to_json()]
    offer = Offer(state, 8)
    generators.explore_families(offer, FlatModel(), 2, families=3, draws=2, rng=rng)
    assert [state.space.family(c) for c in offer.configs] == [state.space.family(first[0]),
                                                             state.space.family(second[0])]


def test_a_share_below_one_pick_is_drawn_batch_by_batch():
    rng = np.random.default_rng(0)
    drawn = [generators.picks(0.5, rng) for _ in range(400)]
    assert set(drawn) == {0, 1} and np.mean(drawn) == pytest.approx(0.5, abs=0.08)
    assert {generators.picks(2.0, rng) for _ in range(20)} == {2}


def test_a_vetted_pick_is_the_better_scored_of_its_draws(model, backend):
    state = _conv_state(model, backend)
    state.observe(state.space.default_config().to_json(), MeasureResult((1e-3,)))
    rng = np.random.default_rng(0)
    draws = list({c.to_json(): c for c in (state.space.sample(rng) for _ in range(100))
                  if c.to_json() not in state.seen}.values())[:32]
    assert len(draws) == 32
    scorer = ScoresFrom({config.to_json(): float(i % 2) for i, config in enumerate(draws)})  # every second higher
    for explore_draws, expected in ((2, draws[1:16:2]), (1, draws[:8])):
        stream = iter(draws)
        offer = Offer(state, 8)
        for _ in range(8):
            generators.vetted(offer, scorer, lambda: next(stream), explore_draws)
        assert offer.configs == expected


def test_the_population_holds_every_config_two_small_knob_changes_from_the_best(model, backend):
    state = _conv_state(model, backend)
    best = state.space.default_config()
    for cost, config in ((1e-3, best), (2e-3, state.space.default_configs()[-1])):
        state.observe(config.to_json(), MeasureResult((cost,)))
    one = {c.to_json() for c in state.space.neighbours(best)}
    two = one | {n.to_json() for c in state.space.neighbours(best) for n in state.space.neighbours(c)}
    two -= {best.to_json()}
    assert len(two) > 2 * len(one)  # changes of two knobs too
    search = _started(ModelGuidedSettings(population=8), [state], FlatModel())
    scored = {c.to_json() for _, c in search.population(state, [best])}
    assert two - state.seen <= scored  # all of them, beside 8 mutations and random samples
    assert len(scored - two) <= 8
    search = _started(ModelGuidedSettings(population=8, local_steps=1), [state], FlatModel())
    scored = {c.to_json() for _, c in search.population(state, [best])}
    assert one - state.seen <= scored and not two - one <= scored


def test_the_sweep_measures_every_small_knob_neighbour_of_the_best(model, backend):
    class LastScoresBest(FlatModel):  # scores the candidates it is given in rising order
        def score(self, state, configs):
            return [(float(i), c) for i, c in enumerate(configs)]

    state = _conv_state(model, backend)
    best = state.space.default_config()
    for cost, config in ((1e-3, best), (2e-3, state.space.default_configs()[-1])):
        state.observe(config.to_json(), MeasureResult((cost,)))
    neighbours = [c for c in state.space.neighbours(best) if c.to_json() not in state.seen]
    assert len(neighbours) > 4
    offer = Offer(state, 8)
    generators.sweep(offer, LastScoresBest(), state.best_configs(), 4)
    assert offer.configs == neighbours[::-1][:4]  # the best config's neighbours, highest score first
    swept = set()
    for _ in range(len(neighbours)):
        offer = Offer(state, 8)
        generators.sweep(offer, LastScoresBest(), state.best_configs(), 4)
        for config in offer.configs:
            state.observe(config.to_json(), MeasureResult((5e-3,)))
        swept |= {c.to_json() for c in offer.configs}
        if {c.to_json() for c in neighbours} <= state.seen:
            break
    assert {c.to_json() for c in neighbours} <= swept  # all measured, then the next best config's
    assert state.best[0][1] == best.to_json()


def test_a_proposal_fills_its_batch_with_the_shares_of_each_pick(model, backend):
    state = _conv_state(model, backend)
    best = state.space.default_config()
    state.observe(best.to_json(), MeasureResult((1e-3,)))
    settings = ModelGuidedSettings(explore_share=0.5, family_share=1.0, sweep_share=0.5, family_explore_share=0.0)
    picks = _started(settings, [state], FlatModel()).propose(state, 8)
    assert len(picks) == 8 and len({c.to_json() for c in picks}) == 8 and not {c.to_json() for c in picks} & state.seen
    # alike scores keep the population's order: the best's neighbourhood comes first
    assert picks[:4] == generators.neighbourhood(state, best, 2)[:4]  # the model's share: half the batch
    sweep = [c for c in state.space.neighbours(best) if c not in picks[:4]][:2]
    assert picks[4:6] == sweep  # half the exploration: the best's small-knob neighbours
    assert not set(picks[6:]) & set(generators.neighbourhood(state, best, 1))  # the rest: random samples


def test_a_batch_never_exceeds_its_count_not_even_with_tied_defaults(backend, cache):
    model = tuner.load(mlp_model())
    states = _states(model, backend)
    state = next(s for s in states if len(s.space.default_configs()) > 1)  # a default tied with other blocks
    defaults = state.space.default_configs()
    rng = np.random.default_rng(0)
    assert random_proposals(state, 1, rng, 0.5) == defaults[:1]
    runner = FakeRunner()
    report = tune(model, backend, cache, TuneSettings(trials=1, **RANDOM), **fake(runner), progress=False)
    assert report.trials == 1 and len(runner.measured) == 1
    state.observe(defaults[0].to_json(), MeasureResult((1e-3,)))
    settings = ModelGuidedSettings(explore_share=1.0, sweep_share=1.0, family_explore_share=1.0)
    picks = _started(settings, states, FlatModel()).propose(state, 3)
    assert len(picks) == 3 and not {c.to_json() for c in picks} & state.seen


def test_until_the_model_is_trained_batches_are_random(model, backend):
    class Untrained(FlatModel):
        trained = False

        def score(self, state, configs):
            raise AssertionError("an untrained model scores nothing")

    state = _conv_state(model, backend)
    search = _started(ModelGuidedSettings(), [state], Untrained(), seed=3)
    assert search.propose(state, 8) == random_proposals(state, 8, np.random.default_rng(3), 0.5)


def test_bad_model_guided_settings_are_rejected():
    with pytest.raises(tuner.SettingsError, match="explore_share must be between 0 and 1, got 1.5"):
        ModelGuidedSettings(explore_share=1.5)
    with pytest.raises(tuner.SettingsError, match="population must not be negative"):
        ModelGuidedSettings(population=-1)
    with pytest.raises(tuner.SettingsError, match="min_rows must be at least 1"):
        ModelGuidedSettings(min_rows=0)
