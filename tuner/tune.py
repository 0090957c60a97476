"""Tune a model: spend a trial budget over its tasks, measure candidates, store every result.

The budget counts what the cache already holds for this model on this backend,
so a re-run after a crash continues up to the same total and a larger budget
tunes further. Each batch is written to the cache as soon as it is measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import TunerError
from .progress import Progress, format_seconds
from .records import Record
from .scheduler import create_scheduler
from .search import check_search, create_search
from .tasks import partition


@dataclass(frozen=True)
class TuneSettings:
    """``trials`` is the model's total budget on the backend, records already in the cache included."""

    trials: int
    batch_size: int | None = None  # None: the search's own (its ``batch_size``)
    seed: int = 0
    mutate_share: float = 0.5  # share of a batch made by mutating the best configs found so far
    top_k: int = 4
    scheduler: str = "work-share"  # or "gradient"
    search: str = "random"  # or "model": cost-model-guided
    population: int = 192  # fewest candidates the cost model scores per proposal ("model" search; more when
    # measuring a batch of the task takes long enough to score more in that time)
    time_budget_s: float | None = None  # stop starting new batches after this long

    def __post_init__(self):
        if self.trials < 0:
            raise TunerError(f"the trial budget must be zero or more, got {self.trials}")
        if self.batch_size is not None and self.batch_size < 1:
            raise TunerError(f"the batch size must be at least 1, got {self.batch_size}")
        if not 0.0 <= self.mutate_share <= 1.0:
            raise TunerError(f"mutate_share must be between 0 and 1, got {self.mutate_share}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise TunerError(f"the time budget must be positive, got {self.time_budget_s} s")
        create_scheduler(self.scheduler)
        check_search(self.search)


@dataclass
class TaskState:
    """What the tuner knows of one task: its space, the configs tried, the best cost."""

    task: object
    space: object
    target_trials: int = 0
    seen: set = field(default_factory=set)
    best: list = field(default_factory=list)  # (cost_s, config_json), best first, at most top_k
    family_best: dict = field(default_factory=dict)  # the space's family -> (cost_s, config_json) of its best
    trials: int = 0
    exhausted: bool = False
    history: list = field(default_factory=list)  # (trials, best_s) after each batch

    @property
    def best_s(self) -> float | None:
        return self.best[0][0] if self.best else None

    def observe(self, config_json: str, result, top_k: int) -> None:
        self.seen.add(config_json)
        self.trials += 1
        if result.ok:
            self.best.append((result.mean_s, config_json))
            self.best.sort()
            del self.best[top_k:]
            family = self._family(config_json)
            if family is not None and (family not in self.family_best or result.mean_s < self.family_best[family][0]):
                self.family_best[family] = (result.mean_s, config_json)

    def best_families(self, count: int) -> list:
        """The best measured config (JSON) of each of the ``count`` best families, best first."""
        return [config for _, config in sorted(self.family_best.values())[:count]]

    def _family(self, config_json: str):
        import search_spaces

        if self.space is None:
            return None
        try:
            config = search_spaces.Config.from_json(config_json)
            self.space.validate(config)
        except ValueError:  # InvalidConfigError included: a record of an older space
            return None
        return self.space.family(config)

    def end_batch(self) -> None:
        if self.best:
            self.history.append((self.trials, self.best_s))


@dataclass(frozen=True)
class TuneReport:
    model: str
    backend: str
    trials: int
    measured: int
    elapsed_s: float
    tasks: tuple[dict, ...]
    search: dict = field(default_factory=dict)
    curve: tuple[tuple[int, float | None], ...] = ()  # (trials, estimated model latency in ms) after each batch

    @property
    def estimated_ms(self) -> float | None:
        """Sum of weight x best latency, when every task has a measured config."""
        if any(task["best_ms"] is None for task in self.tasks):
            return None
        return sum(task["weight"] * task["best_ms"] for task in self.tasks)

    def to_json(self) -> dict:
        return {"model": self.model, "backend": self.backend, "trials": self.trials, "measured": self.measured,
                "elapsed_s": self.elapsed_s, "estimated_ms": self.estimated_ms, "search": self.search,
                "tasks": list(self.tasks), "curve": [list(point) for point in self.curve]}

    def table(self) -> str:
        lines = [f"{'task':<48} {'weight':>6} {'trials':>6} {'best':>10} {'GFLOP/s':>9}"]
        for task in self.tasks:
            best = format_seconds(task["best_ms"] / 1e3) if task["best_ms"] is not None else "-"
            gflops = f"{task['gflops']:.1f}" if task["gflops"] is not None else "-"
            lines.append(f"{task['name'][:48]:<48} {task['weight']:>6} {task['trials']:>6} {best:>10} {gflops:>9}")
        estimate = f"{self.estimated_ms:.3f} ms" if self.estimated_ms is not None else "unknown (untuned tasks)"
        lines.append(f"measured {self.measured} candidates in {self.elapsed_s:.0f} s; "
                     f"estimated model latency {estimate}")
        return "\n".join(lines)


def _load_state(task, space, cache, backend, top_k: int) -> TaskState:
    state = TaskState(task, space)
    for record in cache.records(backend.key, task.workload_key):
        state.observe(record.config, record.result, top_k)
    state.end_batch()
    return state


def tune(model, backend, cache, settings: TuneSettings, measurer=None, progress: bool = True) -> TuneReport:
    """Tune ``model`` on ``backend`` until the cache holds ``settings.trials`` trials of its tasks."""
    import tvm

    import search_spaces

    from .measure import LocalMeasurer

    started = time.perf_counter()
    parts = partition(model, backend)
    target = backend.tvm_target()
    cache.add_backend(backend)
    states = []
    for task in parts.tasks:
        cache.add_workload(task, tvm.ir.save_json(task.func))
        states.append(_load_state(task, search_spaces.space_for(task.func, target), cache, backend, settings.top_k))
    spent = sum(state.trials for state in states)
    scheduler = create_scheduler(settings.scheduler)
    scheduler.start(states, settings.trials)
    strategy = create_search(settings.search, backend, cache, seed=settings.seed, mutate_share=settings.mutate_share,
                             population=settings.population)
    if spent < settings.trials:
        strategy.start(states)
    rng = np.random.default_rng(settings.seed + spent)
    batch_size = settings.batch_size or strategy.batch_size
    own_measurer = measurer is None
    measurer = measurer or LocalMeasurer(backend)
    bar = Progress(total=settings.trials, done=spent, enabled=progress)
    measured = 0
    curve = [(spent, _estimate_ms(states))]
    try:
        while spent < settings.trials and not _out_of_time(started, settings.time_budget_s):
            state = scheduler.next(states, settings.trials - spent)
            if state is None:
                break
            count = min(batch_size, settings.trials - spent, state.target_trials - state.trials)
            configs = strategy.propose(state, count, rng)
            if not configs:
                state.exhausted = True
                continue
            results = measurer.measure(state.task, configs, best_s=state.best_s)
            cache.add_many(_records(backend, state.task, configs, results))
            for config, result in zip(configs, results):
                state.observe(config.to_json(), result, settings.top_k)
            state.end_batch()
            strategy.observe(state, configs, results)
            spent += len(configs)
            measured += len(configs)
            curve.append((spent, _estimate_ms(states)))
            bar.update(spent, _status(state, states))
    finally:
        bar.close()
        if own_measurer:
            measurer.close()
    return TuneReport(model.name, backend.key, spent, measured, time.perf_counter() - started,
                      tuple(_task_summary(state) for state in states), strategy.describe(), tuple(curve))


def _out_of_time(started: float, budget_s: float | None) -> bool:
    return budget_s is not None and time.perf_counter() - started >= budget_s


def _records(backend, task, configs, results) -> list[Record]:
    import tvm

    versions = {"tvm": tvm.__version__, "rule": configs[0].rule if configs else ""}
    return [Record(backend.key, task.workload_key, task.name, config.to_json(), result, versions)
            for config, result in zip(configs, results)]


def _estimate_ms(states: list[TaskState]) -> float | None:
    """Sum of weight x best latency over the tasks, once every task has a measured config."""
    if any(state.best_s is None for state in states):
        return None
    return sum(state.task.weight * state.best_s for state in states) * 1e3


def _status(state: TaskState, states: list[TaskState]) -> str:
    best = format_seconds(state.best_s) if state.best_s is not None else "no valid config yet"
    known = [s for s in states if s.best_s is not None]
    estimate = sum(s.task.weight * s.best_s for s in known)
    return (f"{state.task.name[:32]}: best {best} | model est. {format_seconds(estimate)} "
            f"({len(known)}/{len(states)} tasks)")


def _task_summary(state: TaskState) -> dict:
    task = state.task
    best_s = state.best_s
    return {
        "name": task.name, "workload_key": task.workload_key, "weight": task.weight, "flops": task.flops,
        "rule": state.space.rule, "trials": state.trials,
        "best_ms": best_s * 1e3 if best_s is not None else None,
        "gflops": task.flops / best_s / 1e9 if best_s else None,
        "best_config": json.loads(state.best[0][1]) if state.best else None,
    }
