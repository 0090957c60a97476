"""Where the time goes: every kernel call of a built model, timed and attributed to its task.

The Relax VM calls an instrument function before and after each call; the time
between the two is the call's. A kernel of a task is the task's function in the
model (``<name>_prepacked`` once its weights are packed at build time); everything
else the VM calls (allocation, reshapes, shape checks) is reported as ``runtime``.
A call's time is the median over the runs; the instrument itself adds a few
microseconds per call.
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

    def to_json(self) -> dict:
        return dict(self.__dict__)


def kernel_times_s(executable, device, tensors, runs: int) -> dict[str, list[float]]:
    """Seconds of each call of each VM function over ``runs`` runs (after one warm-up run)."""
    from tvm import relax

    vm = relax.VirtualMachine(executable, device)
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
    times.clear()
    for _ in range(runs):
        vm["main"](*tensors)
    return dict(times)


def profile(built, arrays, runs: int = 20) -> list[TaskTime]:
    """Per task of ``built`` (a BuiltModel), the time it takes in one run on ``arrays``, slowest first."""
    compiled = built.runner()
    times = kernel_times_s(built.executable, compiled.device, compiled.tensors(arrays), runs)
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
    total = sum(per_task.values()) or 1.0
    by_name = {s.task_name: s for s in built.schedules}
    rows = []
    for task, seconds in per_task.items():
        schedule = by_name.get(task)
        gflops = schedule.flops * schedule.weight / seconds / 1e9 if schedule and seconds > 0 else None
        rows.append(TaskTime(task, calls[task], seconds * 1e3, seconds / total,
                             schedule.source if schedule else "runtime", gflops))
    return sorted(rows, key=lambda row: -row.ms_per_run)


def table(rows: list[TaskTime]) -> str:
    lines = [f"  {'task':<44} {'calls':>5} {'ms/run':>8} {'share':>6} {'GFLOP/s':>8}  schedule"]
    for row in rows:
        gflops = f"{row.gflops:.1f}" if row.gflops is not None else "-"
        lines.append(f"  {row.task_name[:44]:<44} {row.calls_per_run:>5} {row.ms_per_run:>8.3f} {row.share:>6.1%} "
                     f"{gflops:>8}  {row.source}")
    return "\n".join(lines)
