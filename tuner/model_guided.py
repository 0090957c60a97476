"""Model-guided search: a cost model, retrained after every batch, picks what to measure.

Until the model is trained (``TrainingSettings.min_rows`` rows with a spread of
throughputs, which transfer from the database can give at once), batches are
random (``strategy.random_proposals``). Then each proposal scores a population
(``generators``): the configs up to ``local_steps`` one-knob changes from the
task's best, mutations of its best configs, other tasks' best configs fitted to
it (transfer) and random samples. ``1 - explore_share`` of the batch are the
top-scored, spread over families; the rest explores: ``sweep_share`` of it the
best configs' unmeasured small-knob neighbours, ``family_explore_share`` random
configs of the best measured families, the rest random samples (each the
better-scored of ``explore_draws`` draws). The same settings and seed give the
same proposals. docs/benchmarks.md has the A/B runs behind the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import generators
from .errors import SettingsError
from .strategy import Offer, SearchStrategy, check_batch_size, random_proposals
from .training import TrainingSettings


@dataclass(frozen=True)
class ModelGuidedSettings:
    batch_size: int = 8  # the model is retrained after every batch: smaller batches learn more often
    population: int = 192  # mutations (3/4) and random samples (1/4) scored per proposal
    local_steps: int = 2  # every config this many small-knob changes from the best is scored too
    generations: int = 0  # rounds of mutating the top-scored: none keeps to what the model knows best
    survivors: int = 16  # configs mutated in each generation
    explore_share: float = 0.5  # of a batch, not the model's top picks
    family_share: float = 0.5  # most of the model's picks from one family
    sweep_share: float = 0.25  # of the exploration picks: neighbours of the best configs
    family_explore_share: float = 0.25  # of the exploration picks: random configs of the best families
    explore_families: int = 3
    explore_draws: int = 2  # a random exploration pick is the better-scored of this many draws
    mutate_share: float = 0.5  # of a random batch, before the model is trained
    max_donors: int = 256  # other tasks' best configs offered for transfer
    min_rows: int = 24  # TrainingSettings
    transfer_rows: int = 3000  # TrainingSettings

    def __post_init__(self):
        check_batch_size(self.batch_size)
        shares = {name: getattr(self, name) for name in ("explore_share", "family_share", "sweep_share",
                                                         "family_explore_share", "mutate_share")}
        for name, share in shares.items():
            if not 0.0 <= share <= 1.0:
                raise SettingsError(f"{name} must be between 0 and 1, got {share}")
        counts = {name: getattr(self, name) for name in ("population", "local_steps", "generations", "survivors",
                                                         "explore_families", "explore_draws", "max_donors")}
        for name, count in counts.items():
            if count < (1 if name in ("survivors", "explore_draws") else 0):
                raise SettingsError(f"{name} must not be negative (explore_draws and survivors at least 1), "
                                    f"got {count}")
        TrainingSettings(self.min_rows, self.transfer_rows)


class ModelGuidedSearch(SearchStrategy):
    name = "model"
    settings_class = ModelGuidedSettings

    def __init__(self, settings: ModelGuidedSettings = ModelGuidedSettings()):
        self.settings = settings
        self.batch_size = settings.batch_size

    def training(self) -> TrainingSettings:
        return TrainingSettings(self.settings.min_rows, self.settings.transfer_rows)

    def start(self, states, context) -> None:
        self.context = context
        self.transfer = generators.Transfer(context.donors[:self.settings.max_donors])

    def describe(self) -> dict:
        transfer = getattr(self, "transfer", None)  # None when the run had no budget left to start
        return {"strategy": self.name, "transferred_configs": len(transfer.donors) if transfer else 0}

    def propose(self, state, count: int) -> list:
        settings, model, rng = self.settings, self.context.model, self.context.rng
        if not model.trained:
            return random_proposals(state, count, rng, settings.mutate_share)
        offer = Offer(state, count)
        elites = state.best_configs()
        explore = math.ceil(settings.explore_share * count)
        generators.exploit(offer, self.population(state, elites), count - explore, settings.family_share)
        generators.sweep(offer, model, elites, len(offer.configs) + math.ceil(settings.sweep_share * explore))
        family_picks = generators.picks(settings.family_explore_share * explore, rng)
        generators.explore_families(offer, model, len(offer.configs) + family_picks, settings.explore_families,
                                    settings.explore_draws, rng)
        for _ in range(20 * count):
            if offer.full:
                break
            generators.vetted(offer, model, lambda: state.space.sample(rng), settings.explore_draws)
        return offer.configs

    def population(self, state, elites: list) -> list:
        """The scored candidates of one proposal, unmeasured, best score first."""
        settings, rng = self.settings, self.context.rng
        per_round = max(1, settings.population // (settings.generations + 1))
        transferred = self.transfer.candidates(state, self.context.states)
        parents = elites or transferred
        mutated = per_round * 3 // 4 if parents else 0
        candidates = (transferred + generators.neighbourhood(state, elites[0] if elites else None,
                                                             settings.local_steps)
                      + generators.mutations(state, parents, mutated, rng)
                      + generators.samples(state, per_round - mutated, rng))
        return generators.evolve(self.context.model, state, candidates, rng, settings.generations,
                                 settings.survivors, per_round)
