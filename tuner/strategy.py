"""The search-strategy role: which configs of a task to measure next.

A strategy is started once with all the run's task states and a ``SearchContext``
(the run's random generator, the cost model's scorer when the strategy asks for
one, other tasks' best configs), then asked for batches: ``propose(state, count)``
returns at most ``count`` configs the task has not measured, and ``observe`` gets
each batch's results. ``create_strategy(kind, **options)`` lists the kinds and,
for an unknown option, the options of its kind.

* ``random``: the default config (and those tied with it) first, then mutations
  of the best configs found so far and random samples.
* ``model`` (``model_guided.ModelGuidedSearch``): a cost model ranks candidates.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import SettingsError


@dataclass(frozen=True)
class SearchContext:
    """What a strategy gets at the start of a run."""

    rng: object  # numpy.random.Generator: the run's only source of randomness
    states: tuple = ()  # every task's TaskState in this run
    model: object = None  # training.Trainer (``score``, ``trained``), when ``strategy.training()`` asks for one
    donors: tuple = ()  # best configs (search_spaces.Config) of the backend's other tasks in the database


class SearchStrategy:
    """Base of the strategies; a custom one overrides ``propose`` and whatever else it needs."""

    name = "custom"
    batch_size = 16

    def training(self):
        """The ``training.TrainingSettings`` of the cost model this strategy scores with; None: no model."""
        return None

    def start(self, states, context: SearchContext) -> None:
        self.context = context

    def propose(self, state, count: int) -> list:
        raise NotImplementedError

    def observe(self, state, configs, results) -> None:
        pass

    def describe(self) -> dict:
        return {"strategy": self.name}


class Offer:
    """Collects at most ``count`` new configs for a task's batch, skipping those measured before or
    already offered; a task's first batch starts with its default config and those tied with it."""

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


def random_proposals(state, count: int, rng, mutate_share: float) -> list:
    """The task's defaults first (when it has no measurement), then ``mutate_share`` of the batch as
    mutations of its best configs, the rest random samples."""
    offer = Offer(state, count)
    mutations = round(count * mutate_share) if state.best else 0
    parents = state.best_configs()
    for attempt in range(20 * count):
        if offer.full:
            break
        if len(offer.configs) < mutations and attempt < 10 * count:
            offer(state.space.mutate(parents[rng.integers(len(parents))], rng))
        else:
            offer(state.space.sample(rng))
    return offer.configs


def check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise SettingsError(f"the batch size must be at least 1, got {batch_size}")


@dataclass(frozen=True)
class RandomSettings:
    mutate_share: float = 0.5  # share of a batch made by mutating the best configs found so far
    batch_size: int = 16

    def __post_init__(self):
        if not 0.0 <= self.mutate_share <= 1.0:
            raise SettingsError(f"mutate_share must be between 0 and 1, got {self.mutate_share}")
        check_batch_size(self.batch_size)


class RandomSearch(SearchStrategy):
    name = "random"
    settings_class = RandomSettings

    def __init__(self, settings: RandomSettings = RandomSettings()):
        self.settings = settings
        self.batch_size = settings.batch_size

    def propose(self, state, count: int) -> list:
        return random_proposals(state, count, self.context.rng, self.settings.mutate_share)


SEARCHES = ("random", "model")


def strategy_class(kind: str):
    from .model_guided import ModelGuidedSearch

    classes = {"random": RandomSearch, "model": ModelGuidedSearch}
    if kind not in classes:
        raise SettingsError(f"unknown search strategy {kind!r}; choose one of {', '.join(SEARCHES)}")
    return classes[kind]


def create_strategy(kind: str, **options) -> SearchStrategy:
    """A strategy of ``kind`` with its settings dataclass made from ``options`` (values may be the
    strings a command line gives)."""
    cls = strategy_class(kind)
    return cls(settings_from_options(cls.settings_class, options, f"{kind} search"))


def settings_from_options(settings_class, options: dict, what: str):
    """``settings_class(**options)``, each string value converted to its field's type; an unknown
    option is an error that lists the allowed ones."""
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise SettingsError(f"unknown option(s) {', '.join(unknown)} for {what}; the options are "
                            f"{', '.join(fields)}")
    values = {}
    for name, value in options.items():
        kind = type(fields[name].default)
        values[name] = _convert(name, value, kind) if isinstance(value, str) and kind is not str else value
    return settings_class(**values)


def _convert(name: str, text: str, kind):
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        value = kind(text)
    except (TypeError, ValueError):
        raise SettingsError(f"option {name}={text!r} is not a {kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"option {name}={text!r} is not a finite number")
    return value
