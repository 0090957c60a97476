from types import SimpleNamespace

import pytest

import tuner
from tuner.scheduler import GradientScheduler, WorkShareScheduler, create_scheduler
from tuner.state import TaskState


def _state(name, weight=1, flops=1e6, history=()):
    state = TaskState(SimpleNamespace(name=name, weight=weight, flops=flops), space=None)
    for trials, best in history:
        state.trials = trials
        state.best = [(best, "{}")]
        state.history.append((trials, best))
    return state


def test_work_share_splits_by_work_and_spends_everything():
    states = [_state("big", flops=9e6), _state("small", flops=1e6)]
    scheduler = WorkShareScheduler()
    scheduler.start(states, 100)
    assert sum(s.target_trials for s in states) == 100
    assert states[0].target_trials > states[1].target_trials >= 1


def test_gradient_tries_every_task_first_heaviest_first():
    states = [_state("light", flops=1e6), _state("heavy", flops=5e6), _state("done", history=[(16, 1e-3)])]
    assert GradientScheduler().next(states, 100).task.name == "heavy"


def test_gradient_prefers_the_task_with_more_weighted_latency_to_win():
    slow = _state("slow", weight=2, history=[(16, 4e-3), (32, 3e-3)])
    fast = _state("fast", weight=1, history=[(16, 1e-4), (32, 1e-4)])
    assert GradientScheduler().next([fast, slow], 100) is slow


def test_gradient_stops_tasks_that_no_longer_improve():
    flat = _state("flat", history=[(16 * i, 1e-3) for i in range(1, 9)])
    improving = _state("improving", history=[(16 * i, 1e-3 / i) for i in range(1, 9)])
    scheduler = GradientScheduler(patience=64)
    assert scheduler.next([flat, improving], 100) is improving
    assert flat.exhausted and not improving.exhausted
    assert scheduler.next([flat], 100) is None


def test_unknown_scheduler_is_named():
    with pytest.raises(tuner.TunerError, match="gradient"):
        create_scheduler("magic")
    with pytest.raises(tuner.TunerError, match="magic"):
        tuner.TuneSettings(trials=1, scheduler="magic")
