"""The runner role: built artifacts -> ``MeasureResult``s, timed on the device.

``LocalRunner`` times each artifact on this machine, one at a time, in an isolated
worker process with a timeout, so nothing else runs on the cores meanwhile. The
first candidates of each task are checked against the unscheduled function. A
candidate timed near its task's best so far is run again before it is reported
(``MeasureSettings.confirm_runs``). A crash, a hang or a wrong result is a
``MeasureResult`` error and measuring goes on; any other exception is a bug and
propagates. ``create_runner(kind)`` lists the kinds.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .errors import SettingsError
from .measure import MeasureSettings, pool_outcome
from .messages import Artifact, TimingOptions
from .records import MeasureResult
from .workers import random_arguments, run_candidate, write_reference


@runtime_checkable
class Runner(Protocol):
    def run(self, task, artifacts: list[Artifact], best_s: float | None = None) -> list[MeasureResult]:
        """One result per artifact, in order. ``best_s``: the task's best mean cost known from
        before (a resumed run's cache), for runners that confirm timings near the best."""

    def close(self) -> None:
        """Release worker processes and files."""


@dataclass
class TaskIO:
    """A task's saved inputs and expected outputs, and what its runner has measured of it so far."""

    io_dir: str
    num_args: int
    num_outputs: int
    reference_ok: bool
    checked: int = 0
    best_s: float = math.inf  # the task's best mean cost measured so far

    def take_check(self, check_first: int) -> bool:
        """Whether the next candidate is to be checked (the first ``check_first`` of the task are)."""
        check = self.reference_ok and self.checked < check_first
        self.checked += int(check)
        return check


class References:
    """Per task, inputs written once to a folder, and the unscheduled function's outputs on them, run
    in a worker process with a timeout on ``target`` (a machine this one can run code for)."""

    def __init__(self, target: dict, timeout_s: float):
        from tvm.support.popen_pool import PopenPoolExecutor

        self.target = target
        self.work_dir = tempfile.mkdtemp(prefix="tuner-run-")
        self._pool = PopenPoolExecutor(max_workers=1, timeout=timeout_s)
        self._tasks: dict[str, TaskIO] = {}

    def prepare(self, task) -> TaskIO:
        import tvm

        if task.workload_key not in self._tasks:
            io_dir = os.path.join(self.work_dir, task.workload_key)
            future = self._pool.submit(write_reference, tvm.ir.save_json(task.func), self.target, io_dir,
                                       task.num_outputs)
            ok = pool_outcome(future, "reference") is None
            self._tasks[task.workload_key] = TaskIO(io_dir, len(task.func.params), task.num_outputs, ok)
            if not ok:  # without a reference we can still time candidates on fresh inputs
                _write_plain_inputs(task, io_dir)
        return self._tasks[task.workload_key]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        shutil.rmtree(self.work_dir, ignore_errors=True)


class LocalRunner:
    """Times artifacts on this machine (see the module docstring)."""

    kind = "local"

    def __init__(self, backend, settings: MeasureSettings = MeasureSettings()):
        from tvm.support.popen_pool import PopenPoolExecutor

        self.backend = backend
        self.settings = settings
        self._runner = PopenPoolExecutor(max_workers=1, timeout=settings.run_timeout_s)
        # the reference runs on this CPU, also for a GPU's task: the unscheduled function binds no threads
        self._references = References(reference_target(backend), settings.reference_timeout_s)
        self.options = timing_options(backend, settings)

    def close(self) -> None:
        self._runner.shutdown(wait=False)
        self._references.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, task, artifacts: list[Artifact], best_s: float | None = None) -> list[MeasureResult]:
        """Time ``artifacts`` one by one; each artifact's library is deleted once it is timed."""
        io = self._references.prepare(task)
        if best_s is not None:
            io.best_s = min(io.best_s, best_s)
        results = []
        for artifact in artifacts:
            result = self._run(artifact, io, io.take_check(self.settings.check_first))
            if result.ok and result.mean_s <= io.best_s * (1 + self.settings.confirm_within):
                result = self._confirm(artifact, io, result)
            if result.ok:
                io.best_s = min(io.best_s, result.mean_s)
            results.append(result)
            if artifact.path is not None and os.path.exists(artifact.path):
                os.remove(artifact.path)
        return results

    def _run(self, artifact: Artifact, io: TaskIO, check: bool) -> MeasureResult:
        future = self._runner.submit(run_candidate, artifact.path, io.io_dir, io.num_args, io.num_outputs, check,
                                     self.options, artifact.prepack)
        return pool_outcome(future, "run")

    def _confirm(self, artifact: Artifact, io: TaskIO, first: MeasureResult) -> MeasureResult:
        """``first`` with the repeats of ``confirm_runs`` more runs of ``artifact``, or the error of one."""
        costs = list(first.costs_s)
        for _ in range(self.settings.confirm_runs):
            again = self._run(artifact, io, check=False)
            if not again.ok:
                return MeasureResult.error(again.error_kind, f"on running it again: {again.error_msg}")
            costs.extend(again.costs_s)
        return MeasureResult(tuple(costs))


def timing_options(backend, settings: MeasureSettings) -> TimingOptions:
    return TimingOptions(
        num_threads=backend.num_cores, cache_flush=backend.timing == "cold", repeat=settings.repeat,
        min_repeat_ms=settings.min_repeat_ms, max_flushed_runs=settings.max_flushed_runs,
        rtol=settings.rtol, atol=settings.atol, device="cuda" if backend.is_cuda else "cpu",
        warm_up_ms=settings.warm_up_ms)


def reference_target(backend) -> dict:
    """The target the unscheduled function of a task of ``backend`` runs on for the correctness checks."""
    return {"kind": "llvm"} if backend.is_cuda else backend.target


def _write_plain_inputs(task, io_dir: str) -> None:
    import numpy as np

    os.makedirs(io_dir, exist_ok=True)
    for index, array in enumerate(random_arguments(task.func, 0)):
        np.save(os.path.join(io_dir, f"arg{index}.npy"), array)


RUNNERS = ("local", "rpc")


def create_runner(kind: str, backend, settings: MeasureSettings = MeasureSettings(), **options) -> Runner:
    """A runner of ``kind``; ``options`` go to its class (``remote=`` for "rpc")."""
    from .rpc_runner import RPCRunner

    classes = {LocalRunner.kind: LocalRunner, RPCRunner.kind: RPCRunner}
    if kind not in classes:
        raise SettingsError(f"unknown runner {kind!r}; choose one of {', '.join(RUNNERS)}")
    return classes[kind](backend, settings, **options)
