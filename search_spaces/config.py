"""Configs: the plain, hashable, JSON-serializable choice of every knob of a rule.

A config is a value. It holds the rule's name and one value per knob; a value is
an int, a string, a bool or a list of ints (stored as a tuple so that configs
hash). The JSON form is canonical (sorted keys, no spaces), so equal configs
give equal strings and a config can be stored in a database and applied again
in another process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Union

from tuner.errors import TunerError

Scalar = Union[int, str, bool]
KnobValue = Union[Scalar, tuple[int, ...]]


class InvalidConfigError(TunerError):
    """A config does not fit its search space: wrong rule, missing or unknown knob,
    a value outside the knob's choices, or a combination the schedule cannot apply.
    The message names the knob and value and says what is allowed."""


def normalize_value(name: str, value) -> KnobValue:
    """The hashable form of a knob value: lists become tuples of ints."""
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(int(v) for v in value)
    raise InvalidConfigError(
        f"knob {name!r}: value {value!r} is not a JSON int, string, bool or list of ints")


def _plain(value: KnobValue):
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Config:
    """The knob values of one rule: ``knobs`` is a tuple of (name, value) sorted by name."""

    rule: str
    knobs: tuple[tuple[str, KnobValue], ...]

    def __post_init__(self):
        if not isinstance(self.rule, str) or not self.rule:
            raise InvalidConfigError(f"config rule must be a non-empty string, got {self.rule!r}")
        names = [name for name, _ in self.knobs]
        if names != sorted(set(names)):
            raise InvalidConfigError(f"config knob names must be unique and sorted, got {names}")

    @classmethod
    def from_dict(cls, rule: str, values: dict) -> "Config":
        """Build a config from ``{knob name: value}`` (lists are accepted for tuples)."""
        if not isinstance(values, dict):
            raise InvalidConfigError(f"config knobs must be a dict, got {type(values).__name__}")
        for name in values:
            if not isinstance(name, str):
                raise InvalidConfigError(f"knob names must be strings, got {name!r}")
        items = tuple(sorted((name, normalize_value(name, v)) for name, v in values.items()))
        return cls(rule, items)

    def as_dict(self) -> dict:
        """``{knob name: value}`` with plain JSON values (tuples become lists)."""
        return {name: _plain(value) for name, value in self.knobs}

    def get(self, name: str) -> KnobValue:
        for knob, value in self.knobs:
            if knob == name:
                return value
        raise InvalidConfigError(f"config of rule {self.rule!r} has no knob {name!r}")

    def replace(self, **changes) -> "Config":
        """A copy with some knob values changed (or added)."""
        values = dict(self.knobs)
        values.update(changes)
        return Config.from_dict(self.rule, values)

    def to_json(self) -> str:
        """Canonical JSON: ``{"knobs": {...}, "rule": "..."}`` with sorted keys."""
        return json.dumps({"rule": self.rule, "knobs": self.as_dict()},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Config":
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            raise InvalidConfigError(f"config JSON cannot be parsed: {err}") from err
        if not isinstance(data, dict) or set(data) != {"rule", "knobs"}:
            raise InvalidConfigError(
                "config JSON must be an object with exactly the keys 'rule' and 'knobs', "
                f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
        return cls.from_dict(data["rule"], data["knobs"])
