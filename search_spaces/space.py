"""The search space of one PrimFunc under one rule: knobs, sampling, mutation,
validation and applying a config.

A rule (see ``Rule``) knows its knobs, a heuristic default, the cross-knob
constraints and how to schedule; everything else is generic and lives here.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm.error import InternalError
from tvm.s_tir import Schedule
from tvm.s_tir.schedule import ScheduleError

from tuner.errors import TunerError, error_line

from .config import Config, InvalidConfigError
from .tiling import move_factor

_SAMPLE_TRIES = 64
_MAX_LISTED_CHOICES = 8


class NotApplicable(TunerError):
    """A rule does not fit the structure of a function (internal to space_for, which tries the next)."""


class Rule:
    """What a search space is made of: one rule's knobs, defaults, legality and schedule.
    Subclasses set ``name`` and ``knobs`` (knob name -> tuple of choices)."""

    name: str
    knobs: dict

    def default_values(self) -> dict:
        raise NotImplementedError

    def tied_values(self) -> list:
        """Other configs (knob dicts) that the heuristic rates as good as the default; none here."""
        return []

    def family(self, values: dict) -> tuple:
        """The knob values that set a config's basic shape (a tiled reduction's register block):
        configs of one family differ in details a search can tune by small steps. One family here."""
        return ()

    def check(self, values: dict) -> None:
        """Raise InvalidConfigError for an illegal combination of knob values."""
        raise NotImplementedError

    def schedule(self, sch: Schedule, values: dict) -> None:
        raise NotImplementedError


def _describe_choices(choices: tuple) -> str:
    shown = ", ".join(repr(list(c) if isinstance(c, tuple) else c)
                      for c in choices[:_MAX_LISTED_CHOICES])
    more = len(choices) - _MAX_LISTED_CHOICES
    return f"[{shown}{f', ... ({more} more)' if more > 0 else ''}]"


def _short(err: Exception) -> str:
    """TVM's schedule errors say what went wrong on a line of their own, after the IR."""
    marked = [ln.strip() for ln in str(err).splitlines() if ln.strip().startswith("Error message:")]
    return marked[0] if marked else error_line(err)


class SearchSpace:
    """Knobs and configs of ``func`` under ``rule``; see the package docstring."""

    def __init__(self, func: tvm.tirx.PrimFunc, target: tvm.target.Target, rule: Rule):
        self.func = func
        self.target = target
        self._rule = rule
        self.rule: str = rule.name
        self.knobs: dict[str, tuple] = dict(rule.knobs)
        self._choice_sets = {name: frozenset(c) for name, c in self.knobs.items()}

    def __repr__(self) -> str:
        return f"SearchSpace(rule={self.rule!r}, knobs={sorted(self.knobs)})"

    # ----- configs --------------------------------------------------------------------
    def default_config(self) -> Config:
        config = Config.from_dict(self.rule, self._rule.default_values())
        self.validate(config)
        return config

    def default_configs(self) -> list:
        """The default config, then the valid configs the heuristic could not tell from it
        (``Rule.tied_values``): a search measures them first, so a guess between equals is
        not left to chance."""
        tied = (Config.from_dict(self.rule, values) for values in self._rule.tied_values())
        return [self.default_config()] + [c for c in tied if self.is_valid(c)]

    def family(self, config: Config) -> tuple:
        """The config's family (``Rule.family``), for a search that spreads its picks over them."""
        return self._rule.family(dict(config.knobs))

    def validate(self, config: Config) -> None:
        if not isinstance(config, Config):
            raise InvalidConfigError(f"expected a search_spaces.Config, got {type(config).__name__}")
        if config.rule != self.rule:
            raise InvalidConfigError(
                f"config is for rule {config.rule!r} but this function's rule is {self.rule!r}")
        values = dict(config.knobs)
        missing = sorted(set(self.knobs) - set(values))
        if missing:
            raise InvalidConfigError(f"rule {self.rule!r}: missing knob(s) {missing}")
        unknown = sorted(set(values) - set(self.knobs))
        if unknown:
            raise InvalidConfigError(
                f"rule {self.rule!r}: unknown knob(s) {unknown}; the knobs are {sorted(self.knobs)}")
        for name, value in values.items():
            if value not in self._choice_sets[name]:
                shown = list(value) if isinstance(value, tuple) else value
                raise InvalidConfigError(
                    f"rule {self.rule!r}: knob {name!r} value {shown!r} is not allowed; "
                    f"allowed: {_describe_choices(self.knobs[name])}")
        self._rule.check(values)

    def is_valid(self, config: Config) -> bool:
        try:
            self.validate(config)
        except InvalidConfigError:
            return False
        return True

    def sample(self, rng: np.random.Generator) -> Config:
        """A random valid config (rejection sampling, then a random walk from the default)."""
        config = self._draw(self.knobs, rng, lambda candidate: True)
        if config is not None:
            return config
        config = self.default_config()
        for _ in range(8):
            config = self.mutate(config, rng)
        return config

    def sample_family(self, config: Config, rng: np.random.Generator) -> Config:
        """A random valid config of ``config``'s family (``family``): each knob drawn from the values
        that keep the family (a tiling with the same innermost factor, say), so that the parts a
        family leaves open (cache tiles, loop order, unrolling) are sampled afresh; ``config`` itself
        when none is found."""
        values = dict(config.knobs)
        family = self._rule.family(values)
        choices = {name: [c for c in options if self._rule.family({**values, name: c}) == family]
                   for name, options in self.knobs.items()}
        drawn = self._draw(choices, rng, lambda candidate: self.family(candidate) == family)
        return config if drawn is None else drawn

    def _draw(self, choices: dict, rng: np.random.Generator, accept) -> Config | None:
        """Rejection sampling: a valid config with each knob drawn from ``choices[knob]`` that
        ``accept`` takes; None after ``_SAMPLE_TRIES`` draws."""
        for _ in range(_SAMPLE_TRIES):
            candidate = Config.from_dict(self.rule, {name: options[int(rng.integers(len(options)))]
                                                     for name, options in choices.items()})
            if self.is_valid(candidate) and accept(candidate):
                return candidate
        return None

    def mutate(self, config: Config, rng: np.random.Generator) -> Config:
        """A valid neighbour that differs in one or two knobs (``config`` itself only
        when no knob has a second choice)."""
        self.validate(config)
        mutable = [name for name, choices in self.knobs.items() if len(choices) > 1]
        if not mutable:
            return config
        for _ in range(_SAMPLE_TRIES):
            count = min(len(mutable), 1 + int(rng.random() < 0.3))
            names = rng.choice(len(mutable), size=count, replace=False)
            values = dict(config.knobs)
            for index in names:
                name = mutable[int(index)]
                values[name] = self._neighbour(name, values[name], rng)
            candidate = Config.from_dict(self.rule, values)
            if candidate != config and self.is_valid(candidate):
                return candidate
        return config

    def neighbours(self, config: Config, max_choices: int = 8) -> list:
        """The valid configs that differ from ``config`` in one knob of at most ``max_choices``
        values (unrolling, loop order, parallel levels, ...; not the tilings of long axes), knob
        by knob: few enough to measure every one."""
        self.validate(config)
        values = dict(config.knobs)
        found = []
        for name, choices in self.knobs.items():
            if len(choices) > max_choices:
                continue
            for choice in choices:
                if choice != values[name]:
                    candidate = Config.from_dict(self.rule, {**values, name: choice})
                    if self.is_valid(candidate):
                        found.append(candidate)
        return found

    def project(self, config: Config) -> Config | None:
        """The config of this space nearest to ``config``, a config of the same rule for another task
        (other shapes): each knob value kept where this space allows it, a tiling replaced by the
        allowed tiling of as many levels closest in log-factors, anything else left at the default.
        None for another rule or other knobs (a matmul's config for a conv), or when no valid config
        results."""
        if config.rule != self.rule or {name for name, _ in config.knobs} != set(self.knobs):
            return None
        defaults = dict(Config.from_dict(self.rule, self._rule.default_values()).knobs)
        values = dict(defaults)
        given = dict(config.knobs)
        for name, choices in self.knobs.items():
            value = given.get(name)
            if value in self._choice_sets[name]:
                values[name] = value
            elif isinstance(value, tuple) and all(v > 0 for v in value):
                tilings = [c for c in choices if isinstance(c, tuple) and len(c) == len(value)]
                if tilings:
                    values[name] = min(tilings, key=lambda c: sum(abs(math.log(a / b)) for a, b in zip(c, value)))
        projected = Config.from_dict(self.rule, values)
        if self.is_valid(projected):
            return projected
        for name, default in defaults.items():  # drop the conflicting non-tiling knob
            if not isinstance(default, tuple) and values[name] != default:
                candidate = Config.from_dict(self.rule, {**values, name: default})
                if self.is_valid(candidate):
                    return candidate
        return None

    def _neighbour(self, name: str, value, rng: np.random.Generator):
        choices = self.knobs[name]
        if isinstance(value, tuple) and rng.random() < 0.7:
            moved = move_factor(value, rng)
            if moved != value and moved in self._choice_sets[name]:
                return moved
        others = [c for c in choices if c != value]
        return others[int(rng.integers(len(others)))] if others else value

    # ----- scheduling -----------------------------------------------------------------
    def apply(self, config: Config) -> Schedule:
        """The scheduled function (``.mod``); the same config always gives the same IR."""
        self.validate(config)
        sch = Schedule(self.func, seed=1, error_render_level="fast")
        try:
            self._rule.schedule(sch, dict(config.knobs))
        except (ScheduleError, InternalError) as err:
            raise InvalidConfigError(
                f"rule {self.rule!r}: config {config.to_json()} cannot be applied to this "
                f"function: {_short(err)}") from err
        return sch
