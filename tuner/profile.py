"""Where the time goes: every kernel call of a built model, timed and attributed to its task.

The Relax VM calls an instrument function before and after each call; the time
between the two is the call's. A kernel of a task is the task's function in the
model (``<name>_prepacked`` once its weights are packed at build time); everything
else the VM calls (allocation, reshapes, shape checks) is reported as ``runtime``.
A call's time is the median over the runs; the instrument itself adds about a
microsecond per call, which would make a model's hundreds of cheap runtime calls
look like a millisecond of work: so ``runtime`` is at most what uninstrumented runs
of the same model, timed in alternation, leave beside its kernels.

Beside each tuned task's time in the model stands the time its cache record was
measured at, alone (``tuned_ms``): the tuner's estimate of the model is the sum of
those. A task far slower in the model than alone is one whose neighbours change its
timing (caches left full, or lines held by the other core, by the calls before it).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

RUNTIME = "runtime (allocation, reshapes, checks)"


@dataclass(frozen=True)
class TaskTime:
    """One task's share of a run of the model."""

    task_name: str
    calls_per_run: int
    ms_per_run: float
    share: float
    source: str  # "cache", "default" or "runtime"
    gflops: float | None
    tuned_ms: float | None = None  # per call, as its cache record was measured alone (cache rows only)

    @property
    def over_tuned(self) -> float | None:
        """Time per call in the model over the cache record's time per call."""
        if not self.tuned_ms or not self.calls_per_run:
            return None
        return self.ms_per_run / self.calls_per_run / self.tuned_ms

    def to_json(self) -> dict:
        return {**self.__dict__, "over_tuned": self.over_tuned}


def kernel_times_s(executable, device, tensors, runs: int) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds of each call of each VM function over ``runs`` instrumented runs, and the seconds of as
    many uninstrumented runs in alternation with them (after one warm-up run of each)."""
    from tvm import relax

    vm, plain = relax.VirtualMachine(executable, device), relax.VirtualMachine(executable, device)
    started: dict[str, float] = {}
    times: dict[str, list[float]] = defaultdict(list)

    def instrument(_func, name, before, _ret, *_args):
        if before:
            started[name] = time.perf_counter()
        else:
            times[name].append(time.perf_counter() - started[name])
        return 0  # VMInstrumentReturnKind.NO_OP: run the call

    vm.set_instrument(instrument)
    vm["main"](*tensors)
    plain["main"](*tensors)
    times.clear()
    totals = []
    for _ in range(runs):
        vm["main"](*tensors)
        start = time.perf_counter()
        plain["main"](*tensors)
        device.sync()
        totals.append(time.perf_counter() - start)
    return dict(times), totals


def profile(built, arrays, runs: int = 20) -> list[TaskTime]:
    """Per task of ``built`` (a BuiltModel), the time it takes in one run on ``arrays``, slowest first."""
    compiled = built.runner()
    times, totals = kernel_times_s(built.executable, compiled.device, compiled.tensors(arrays), runs)
    owner = {}
    for schedule in built.schedules:
        for name in schedule.global_names:
            owner[name] = owner[name + "_prepacked"] = schedule
    per_task: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for name, samples in times.items():
        task = owner[name].task_name if name in owner else RUNTIME
        count = len(samples) // runs
        per_task[task] += statistics.median(samples) * count
        calls[task] += count
    if RUNTIME in per_task:
        kernels = sum(seconds for task, seconds in per_task.items() if task != RUNTIME)
        per_task[RUNTIME] = min(per_task[RUNTIME], max(0.0, statistics.median(totals) - kernels))
    total = sum(per_task.values()) or 1.0
    by_name = {s.task_name: s for s in built.schedules}
    rows = []
    for task, seconds in per_task.items():
        schedule = by_name.get(task)
        gflops = schedule.flops * schedule.weight / seconds / 1e9 if schedule and seconds > 0 else None
        tuned_ms = schedule.cached_cost_s * 1e3 if schedule and schedule.cached_cost_s else None
        rows.append(TaskTime(task, calls[task], seconds * 1e3, seconds / total,
                             schedule.source if schedule else "runtime", gflops, tuned_ms))
    return sorted(rows, key=lambda row: -row.ms_per_run)


def table(rows: list[TaskTime]) -> str:
    """One line per row; ``x tuned``: time per call in the model over the cache record's. Under it, for
    the tasks with a record, the sum of their recorded times (the tuner's estimate) and of their times
    here."""
    lines = [f"  {'task':<44} {'calls':>5} {'ms/run':>8} {'share':>6} {'GFLOP/s':>8} {'x tuned':>8}  schedule"]
    for row in rows:
        gflops = f"{row.gflops:.1f}" if row.gflops is not None else "-"
        ratio = f"{row.over_tuned:.2f}x" if row.over_tuned is not None else "-"
        lines.append(f"  {row.task_name[:44]:<44} {row.calls_per_run:>5} {row.ms_per_run:>8.3f} {row.share:>6.1%} "
                     f"{gflops:>8} {ratio:>8}  {row.source}")
    tuned = [row for row in rows if row.tuned_ms]
    if tuned:
        recorded = sum(row.tuned_ms * row.calls_per_run for row in tuned)
        here = sum(row.ms_per_run for row in tuned)
        lines.append(f"  tasks with a record ({len(tuned)}): {here:.3f} ms per run here, {recorded:.3f} ms as "
                     f"their records were measured alone ({here / recorded:.2f}x)")
    return "\n".join(lines)
