"""How much a tuning run may spend: trials (the cache's records of the model included), this
run's wall-clock time, or both; with neither, a time budget that scales with the model."""

from __future__ import annotations

from dataclasses import dataclass

from .progress import format_duration

DEFAULT_S_PER_TASK = 60.0
DEFAULT_MAX_S = 20 * 60.0
# A time-only budget has no trial limit; task schedulers that split trials split this many.
UNLIMITED_TRIALS = 10 ** 9


@dataclass(frozen=True)
class Budget:
    trials: int | None
    seconds: float | None
    default: bool = False  # chosen for the model, not given

    @classmethod
    def of(cls, trials: int | None, seconds: float | None, num_tasks: int) -> "Budget":
        if trials is None and seconds is None:
            return cls(None, min(DEFAULT_S_PER_TASK * max(num_tasks, 1), DEFAULT_MAX_S), default=True)
        return cls(trials, seconds)

    @property
    def trial_limit(self) -> int:
        return self.trials if self.trials is not None else UNLIMITED_TRIALS

    def allows(self, spent_trials: int, elapsed_s: float) -> bool:
        return spent_trials < self.trial_limit and (self.seconds is None or elapsed_s < self.seconds)

    def describe(self) -> str:
        parts = []
        if self.seconds is not None:
            parts.append(f"for {format_duration(self.seconds)}")
        if self.trials is not None:
            parts.append(f"up to {self.trials} trials (the cache's included)")
        text = " or ".join(parts)
        if self.default:
            text += (f" (the default: {format_duration(DEFAULT_S_PER_TASK)} a task, at most "
                     f"{format_duration(DEFAULT_MAX_S)}; --time or --trials sets it)")
        return text
