"""Task schedulers: which task gets the next batch of trials.

* ``WorkShareScheduler`` splits the budget up front: an equal floor per task,
  the rest by weight x FLOPs.
* ``GradientScheduler`` (after Ansor's) gives the next batch to the task whose
  weighted latency is expected to drop most per trial, judged from how fast it
  improved lately and how far it might still go, and stops tasks that no
  longer improve.

A scheduler sees ``TaskState`` objects (``task``, ``trials``, ``best_s``,
``history``, ``exhausted``) and returns one of them, or None when no task
should be tuned further.
"""

from __future__ import annotations

import math

from .errors import SettingsError


class WorkShareScheduler:
    name = "work-share"

    def start(self, states, trials: int) -> None:
        if not states:
            return
        floor = min(trials // (2 * len(states)), 16)
        rest = trials - floor * len(states)
        work = [max(s.task.weight * s.task.flops, 1.0) for s in states]
        shares = [rest * amount / sum(work) for amount in work]
        for state, share in zip(states, shares):
            state.target_trials = floor + int(share)
        leftover = trials - sum(state.target_trials for state in states)
        by_fraction = sorted(range(len(states)), key=lambda i: int(shares[i]) - shares[i])
        for index in by_fraction[:leftover]:
            states[index].target_trials += 1

    def next(self, states, remaining: int):
        state = self._most_behind(states)
        if state is None:  # targets met, or tasks exhausted, with budget left: hand it to the others
            self._reallocate(states, remaining)
            state = self._most_behind(states)
        return state

    @staticmethod
    def _most_behind(states):
        open_states = [s for s in states if not s.exhausted and s.trials < s.target_trials]
        if not open_states:
            return None
        return min(open_states, key=lambda s: (s.trials / max(s.target_trials, 1), -s.task.flops * s.task.weight))

    @staticmethod
    def _reallocate(states, remaining: int) -> None:
        open_states = [s for s in states if not s.exhausted]
        unplanned = remaining - sum(max(s.target_trials - s.trials, 0) for s in open_states)
        if open_states and unplanned > 0:
            extra = math.ceil(unplanned / len(open_states))
            for state in open_states:
                state.target_trials += extra


class GradientScheduler:
    """Ansor-style: pick the task with the largest expected gain in weighted latency per trial.

    ``alpha`` mixes the backward gradient (the improvement seen over the last
    ``window`` batches) with the optimistic forward one (latency falling like
    1/trials). A task whose best has not improved by ``min_gain`` over its last
    ``patience`` trials is stopped.
    """

    name = "gradient"

    def __init__(self, alpha: float = 0.2, window: int = 3, patience: int = 64, min_gain: float = 0.01):
        self.alpha = alpha
        self.window = window
        self.patience = patience
        self.min_gain = min_gain

    def start(self, states, trials: int) -> None:
        for state in states:
            state.target_trials = trials

    def next(self, states, remaining: int):
        candidates = [s for s in states if not s.exhausted]
        if not candidates:
            return None
        untried = [s for s in candidates if s.best_s is None]
        if untried:
            return max(untried, key=lambda s: s.task.weight * s.task.flops)
        for state in candidates:
            if self._stalled(state):
                state.exhausted = True
        candidates = [s for s in candidates if not s.exhausted]
        if not candidates:
            return None
        return max(candidates, key=self.gain)

    def gain(self, state) -> float:
        history = state.history
        backward = 0.0
        if len(history) > self.window:
            old_trials, old_best = history[-1 - self.window]
            new_trials, new_best = history[-1]
            backward = (old_best - new_best) / max(new_trials - old_trials, 1)
        forward = state.best_s / max(state.trials, 1)
        return state.task.weight * (self.alpha * backward + (1 - self.alpha) * forward)

    def _stalled(self, state) -> bool:
        if state.trials < self.patience or not state.history:
            return False
        recent = [best for trials, best in state.history if trials <= state.trials - self.patience]
        if not recent:
            return False
        return recent[-1] - state.best_s < self.min_gain * recent[-1]


SCHEDULERS = {"work-share": WorkShareScheduler, "gradient": GradientScheduler}


def create_scheduler(kind: str):
    if kind not in SCHEDULERS:
        raise SettingsError(f"unknown task scheduler {kind!r}; choose one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[kind]()
