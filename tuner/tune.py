"""Tune a model: spend a budget over its tasks, measure candidates, store every result.

The roles (builder, runner, search strategy, cost model, task scheduler) are keyword
arguments of ``tune``: each defaults to the one ``TuneSettings`` names, and any object
with the role's interface can stand in. A trial budget counts what the cache already
holds for this model on this backend, so a re-run after a crash continues up to the
same total and a larger budget tunes further; a time budget is this run's wall-clock
time. Each batch is written to the cache as soon as it is measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from .budget import Budget
from .errors import SettingsError
from .layout_plan import AUTO, choose_plan, plan_partition, union, variants
from .measure import MeasureSettings, measure
from .progress import Progress, format_seconds
from .records import Record
from .remote import DevicesLostError
from .scheduler import create_scheduler
from .state import load_state
from .strategy import SearchContext, check_batch_size
from .tasks import partition


@dataclass(frozen=True)
class TuneSettings:
    """What to tune for and how. With neither ``trials`` nor ``time_budget_s``, the budget is time:
    ``budget.DEFAULT_S_PER_TASK`` per task, at most ``budget.DEFAULT_MAX_S``."""

    trials: int | None = None  # the model's total on the backend, records already in the cache included
    time_budget_s: float | None = None  # stop starting new batches after this long
    search: str = "model"  # cost-model-guided; or "random"
    scheduler: str = "gradient"  # or "work-share"
    search_options: dict = field(default_factory=dict, hash=False)  # fields of the search's settings class
    batch_size: int | None = None  # None: the search's own
    seed: int = 0
    top_k: int = 4  # best configs kept per task (the parents of mutations)
    # with conv_layout auto, rounds of timing the candidate plans' builds at the end (``plan_timing``);
    # 0 keeps the plan the records give
    layout_rounds: int = 5

    def __post_init__(self):
        if self.layout_rounds < 0:
            raise SettingsError(f"layout_rounds must be zero or more, got {self.layout_rounds}")
        if self.trials is not None and self.trials < 0:
            raise SettingsError(f"the trial budget must be zero or more, got {self.trials}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise SettingsError(f"the time budget must be positive, got {self.time_budget_s} s")
        if self.batch_size is not None:
            check_batch_size(self.batch_size)
        create_scheduler(self.scheduler)
        self.create_strategy()  # an unknown kind or option is an error before any work

    def create_strategy(self):
        from .strategy import create_strategy

        return create_strategy(self.search, **self.search_options)


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
    budget: str = ""

    @property
    def estimated_ms(self) -> float | None:
        """Sum of weight x best latency, when every task has a measured config."""
        if any(task["best_ms"] is None for task in self.tasks):
            return None
        return sum(task["weight"] * task["best_ms"] for task in self.tasks)

    def to_json(self) -> dict:
        return {"model": self.model, "backend": self.backend, "budget": self.budget, "trials": self.trials,
                "measured": self.measured, "elapsed_s": self.elapsed_s, "estimated_ms": self.estimated_ms,
                "search": self.search, "tasks": list(self.tasks), "curve": [list(point) for point in self.curve]}

    def table(self) -> str:
        lines = [f"{'task':<48} {'weight':>6} {'trials':>6} {'best':>10} {'GFLOP/s':>9}"]
        for task in self.tasks:
            best = format_seconds(task["best_ms"] / 1e3) if task["best_ms"] is not None else "-"
            gflops = f"{task['gflops']:.1f}" if task["gflops"] is not None else "-"
            lines.append(f"{task['name'][:48]:<48} {task['weight']:>6} {task['trials']:>6} {best:>10} {gflops:>9}")
        estimate = f"{self.estimated_ms:.3f} ms" if self.estimated_ms is not None else "unknown (untuned tasks)"
        lines.append(f"measured {self.measured} candidates in {self.elapsed_s:.0f} s; "
                     f"estimated model latency {estimate}")
        layout = self.search.get("conv_layout")
        if layout:
            from .layout_plan import describe

            lines.append(describe(layout))
        return "\n".join(lines)


def tune(model, backend, cache, settings: TuneSettings = TuneSettings(), *, builder=None, runner=None,
         strategy=None, cost_model=None, scheduler=None, measure_settings: MeasureSettings = MeasureSettings(),
         progress: bool = True) -> TuneReport:
    """Tune ``model`` on ``backend`` within ``settings``' budget, storing every measurement in ``cache``.

    ``builder`` (``builder.Builder``), ``runner`` (``runner.Runner``), ``strategy``
    (``strategy.SearchStrategy``), ``cost_model`` (``costmodel.CostModel``, for a strategy that
    scores with one) and ``scheduler`` replace the defaults; the roles ``tune`` makes it also closes.
    """
    if backend.is_cuda and runner is None:  # the local runner times on this machine's GPU
        from .cuda import require_gpu

        require_gpu("tuning")
    started = time.perf_counter()
    times_here = runner is None and not backend.is_cuda  # whole builds can be timed on this machine
    states, layouts = model_states(model, backend, cache, settings.top_k)
    budget = Budget.of(settings.trials, settings.time_budget_s, len(states))
    scheduler = scheduler or create_scheduler(settings.scheduler)
    strategy = strategy or settings.create_strategy()
    spent = sum(state.trials for state in states)
    scheduler.start(states, budget.trial_limit)
    bar = Progress(budget.trials, budget.seconds, spent, enabled=progress)
    bar.write(f"tuning {model.name} ({len(states)} tasks) on {backend.key} {budget.describe()}, "
              f"{strategy.name} search, {scheduler.name} scheduler")
    builder, runner, owned = _measuring_roles(builder, runner, backend, measure_settings)
    measured = 0
    plan = None

    def choose_layout():  # with ``auto``: once every layout's tasks are measured, the plan's tasks only
        nonlocal plan
        if plan is None and (plan := narrow_when_measured(states, model, backend, cache, layouts, settings.top_k)):
            scheduler.start(states, budget.trial_limit)
            bar.write(plan.describe())

    choose_layout()
    curve = [(spent, _estimate_ms(states))]
    trainer = None
    try:
        if budget.allows(spent, time.perf_counter() - started):
            context = _context(strategy, states, backend, cache, cost_model, settings.seed + spent)
            trainer = context.model
            strategy.start(states, context)
        batch_size = settings.batch_size or strategy.batch_size
        while budget.allows(spent, time.perf_counter() - started):
            state = scheduler.next(states, budget.trial_limit - spent)
            if state is None:
                break
            count = min(batch_size, budget.trial_limit - spent, state.target_trials - state.trials)
            configs = _fresh(strategy.propose(state, count), state, count)
            if not configs:
                state.exhausted = True
                continue
            try:
                results = measure(builder, runner, state.task, configs, best_s=state.best_s)
            except DevicesLostError as err:
                measured += _record_measured(cache, backend, state, configs, err.results)
                raise DevicesLostError(f"{err}: stopped after {measured} candidates, all stored; run the same "
                                       f"command again to go on") from None
            _record(cache, backend, state, configs, results)
            if trainer is not None:
                trainer.observe(state, configs, results)
            strategy.observe(state, configs, results)
            spent += len(configs)
            measured += len(configs)
            choose_layout()
            curve.append((spent, _estimate_ms(states)))
            bar.update(measured if budget.trials is None else spent, _status(state, states))
    finally:
        bar.close()
        for role in owned:
            role.close()
    if plan is not None and times_here and settings.layout_rounds:
        from .plan_timing import choose_by_timing

        bar.write("timing the candidate layout plans' builds against each other")
        plan = choose_by_timing(model, backend, cache, settings.layout_rounds)
        bar.write(plan.describe())
    return TuneReport(model.name, backend.key, spent, measured, time.perf_counter() - started,
                      tuple(_task_summary(state) for state in states),
                      {**(trainer.describe() if trainer else {}), **strategy.describe(),
                       **({"conv_layout": plan.to_json()} if plan else {})}, tuple(curve),
                      budget.describe())


def model_states(model, backend, cache, top_k: int):
    """The task states of ``model`` on ``backend``, from what ``cache`` holds, and with ``conv_block``
    AUTO the partitions of the candidate layouts (None otherwise): the states are then those of every
    layout (``narrow_when_measured`` makes them the plan's)."""
    layouts = variants(model, backend) if backend.conv_block == AUTO else None
    parts = union(layouts) if layouts else partition(model, backend)
    return _task_states(parts.tasks, backend, cache, top_k), layouts


def narrow_when_measured(states: list, model, backend, cache, layouts, top_k: int):
    """With ``layouts`` (``auto``) and a record for every state: choose the plan, and ``states`` becomes
    its tasks (``_narrow``). The plan, or None where nothing was chosen."""
    if not layouts or not all(state.best_s is not None or state.exhausted for state in states):
        return None
    return _narrow(states, model, backend, cache, layouts, top_k)


def _task_states(tasks, backend, cache, top_k: int) -> list:
    import tvm

    import search_spaces

    target = backend.tvm_target()
    cache.add_backend(backend)
    states = []
    for task in tasks:
        cache.add_workload(task, tvm.ir.save_json(task.func))
        states.append(load_state(task, search_spaces.space_for(task.func, target), cache, backend, top_k))
    return states


def _narrow(states: list, model, backend, cache, layouts: dict, top_k: int):
    """Choose the layout plan from the states' records; ``states`` becomes the plan's tasks (those of
    the other layouts are stopped, conversions new to the plan added). Returns the plan."""
    best = {state.task.workload_key: state.best_s for state in states}
    plan = choose_plan(layouts, best.get)
    by_key = {state.task.workload_key: state for state in states}
    tasks = plan_partition(model, backend, plan, layouts).tasks
    new = iter(_task_states([task for task in tasks if task.workload_key not in by_key], backend, cache, top_k))
    kept = [by_key[task.workload_key] if task.workload_key in by_key else next(new) for task in tasks]
    kept_ids = {id(state) for state in kept}
    for state in states:
        state.exhausted = state.exhausted or id(state) not in kept_ids
    states[:] = kept
    return plan


def _measuring_roles(builder, runner, backend, settings):
    """The builder and runner given, the local ones where none is; and those made here (to close)."""
    from .builder import LocalBuilder
    from .runner import LocalRunner

    owned = []
    if builder is None:
        builder = LocalBuilder(backend, settings)
        owned.append(builder)
    if runner is None:
        runner = LocalRunner(backend, settings)
        owned.append(runner)
    return builder, runner, owned


def _context(strategy, states, backend, cache, cost_model, seed: int) -> SearchContext:
    """The strategy's context; a cost model (the default XGBoost one unless given) and its trainer
    only for a strategy that asks for one."""
    training = strategy.training()
    trainer = None
    if training is not None:
        from .training import Trainer

        if cost_model is None:
            import costmodel

            cost_model = costmodel.create_cost_model("xgb", seed=seed)
        trainer = Trainer(backend, cache, cost_model, training)
        trainer.start(states)
    own = {state.task.workload_key for state in states}
    return SearchContext(np.random.default_rng(seed), tuple(states), trainer, tuple(_donors(cache, backend, own)))


def _donors(cache, backend, own: set) -> list:
    """The best config of each other task of ``backend`` in ``cache`` (transfer between tasks)."""
    import search_spaces

    donors = []
    for row in cache.summary():
        if row["backend_key"] != backend.key or row["workload_key"] in own or row["best_s"] is None:
            continue
        try:
            donors.append(search_spaces.Config.from_json(cache.best(backend.key, row["workload_key"]).config))
        except search_spaces.InvalidConfigError:  # a record of an older space
            continue
    return donors


def _fresh(configs, state, count: int) -> list:
    """At most ``count`` of a strategy's configs, none measured before or proposed twice."""
    fresh = {}
    for config in configs:
        if config.to_json() not in state.seen:
            fresh.setdefault(config.to_json(), config)
    return list(fresh.values())[:count]


def _record(cache, backend, state, configs, results) -> None:
    """Store a measured batch and tell the task's state."""
    import tvm

    versions = {"tvm": tvm.__version__, "rule": configs[0].rule}
    cache.add_many([Record(backend.key, state.task.workload_key, state.task.name, config.to_json(), result,
                           versions) for config, result in zip(configs, results)])
    for config, result in zip(configs, results):
        state.observe(config.to_json(), result)
    state.end_batch()


def _record_measured(cache, backend, state, configs, results) -> int:
    """Store the configs of a batch that were measured before the devices were lost; how many."""
    done = [(config, result) for config, result in zip(configs, results or []) if result is not None]
    if done:
        _record(cache, backend, state, [config for config, _ in done], [result for _, result in done])
    return len(done)


def _estimate_ms(states) -> float | None:
    """Sum of weight x best latency over the tasks, once every task has a measured config."""
    if any(state.best_s is None for state in states):
        return None
    return sum(state.task.weight * state.best_s for state in states) * 1e3


def _status(state, states) -> str:
    best = format_seconds(state.best_s) if state.best_s is not None else "no valid config yet"
    known = [s for s in states if s.best_s is not None]
    estimate = sum(s.task.weight * s.best_s for s in known)
    return (f"{state.task.name[:32]}: best {best} | model est. {format_seconds(estimate)} "
            f"({len(known)}/{len(states)} tasks)")


def _task_summary(state) -> dict:
    task = state.task
    best_s = state.best_s
    return {
        "name": task.name, "workload_key": task.workload_key, "weight": task.weight, "flops": task.flops,
        "rule": state.space.rule, "trials": state.trials,
        "best_ms": best_s * 1e3 if best_s is not None else None,
        "gflops": task.flops / best_s / 1e9 if best_s else None,
        "best_config": json.loads(state.best[0][1]) if state.best else None,
    }
