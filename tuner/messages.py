"""What the roles pass each other across processes: plain frozen values.

A builder turns configs into ``Artifact``s (or ``MeasureResult`` errors); a runner
times artifacts and returns ``MeasureResult``s. The measuring worker processes
take and return these, so a worker needs nothing from the parent but its module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prepack:
    """A built candidate's weight prepacking: its library's ``prepack`` function turns the task's
    inputs at ``indices`` into inputs of the ``packed`` (shape, dtype)s, once, before timing."""

    indices: tuple[int, ...]
    packed: tuple[tuple[tuple[int, ...], str], ...]

    @classmethod
    def of(cls, split) -> "Prepack | None":
        """The prepacking of a ``prepack.Split``; None when its schedule packs nothing."""
        if split.prepack is None:
            return None
        return cls(tuple(split.indices), tuple((tuple(shape), dtype) for shape, dtype in split.packed_shapes()))


@dataclass(frozen=True)
class Artifact:
    """A built candidate: its config and the library it was compiled to (``path``; None from a
    builder that compiles nothing, such as a test's)."""

    config: object  # search_spaces.Config
    path: str | None = None
    prepack: Prepack | None = None


@dataclass(frozen=True)
class TimingOptions:
    """How a runner's worker times one artifact."""

    num_threads: int
    cache_flush: bool  # flush the CPU caches of every argument but the first before each run (cold)
    repeat: int
    min_repeat_ms: int
    max_flushed_runs: int
    rtol: float
    atol: float
    device: str = "cpu"  # or "cuda": the first GPU of the machine that times
    warm_up_ms: int = 0  # untimed back-to-back runs before the timed ones

    def to_json(self) -> dict:
        """The plain form that ``device_timing.check_and_time`` and offline devices read."""
        return {"num_threads": self.num_threads, "cold": self.cache_flush, "repeat": self.repeat,
                "min_repeat_ms": self.min_repeat_ms, "max_flushed_runs": self.max_flushed_runs,
                "rtol": self.rtol, "atol": self.atol, "warm_up_ms": self.warm_up_ms}
