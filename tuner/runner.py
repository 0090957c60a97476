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
class _TaskIO:
    io_dir: str
    num_args: int
    num_outputs: int
    reference_ok: bool
    checked: int = 0
    best_s: float = math.inf  # the task's best mean cost measured so far


class LocalRunner:
    """Times artifacts on this machine (see the module docstring)."""

    kind = "local"

    def __init__(self, backend, settings: MeasureSettings = MeasureSettings()):
        from tvm.support.popen_pool import PopenPoolExecutor

        self.backend = backend
        self.settings = settings
        self._work_dir = tempfile.mkdtemp(prefix="tuner-run-")
        self._runner = PopenPoolExecutor(max_workers=1, timeout=settings.run_timeout_s)
        self._reference = PopenPoolExecutor(max_workers=1, timeout=settings.reference_timeout_s)
        self._tasks: dict[str, _TaskIO] = {}
        self.options = TimingOptions(
            num_threads=backend.num_cores, cache_flush=backend.timing == "cold", repeat=settings.repeat,
            min_repeat_ms=settings.min_repeat_ms, max_flushed_runs=settings.max_flushed_runs,
            rtol=settings.rtol, atol=settings.atol)

    def close(self) -> None:
        self._runner.shutdown(wait=False)
        self._reference.shutdown(wait=False)
        shutil.rmtree(self._work_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, task, artifacts: list[Artifact], best_s: float | None = None) -> list[MeasureResult]:
        """Time ``artifacts`` one by one; each artifact's library is deleted once it is timed."""
        io = self._prepare(task)
        if best_s is not None:
            io.best_s = min(io.best_s, best_s)
        results = []
        for artifact in artifacts:
            check = io.reference_ok and io.checked < self.settings.check_first
            io.checked += int(check)
            result = self._run(artifact, io, check)
            if result.ok and result.mean_s <= io.best_s * (1 + self.settings.confirm_within):
                result = self._confirm(artifact, io, result)
            if result.ok:
                io.best_s = min(io.best_s, result.mean_s)
            results.append(result)
            if artifact.path is not None and os.path.exists(artifact.path):
                os.remove(artifact.path)
        return results

    def _prepare(self, task) -> _TaskIO:
        """The task's inputs and expected outputs, written once by its unscheduled function."""
        import tvm

        if task.workload_key not in self._tasks:
            io_dir = os.path.join(self._work_dir, task.workload_key)
            future = self._reference.submit(write_reference, tvm.ir.save_json(task.func), self.backend.target,
                                            io_dir, task.num_outputs)
            ok = pool_outcome(future, "reference") is None
            self._tasks[task.workload_key] = _TaskIO(io_dir, len(task.func.params), task.num_outputs, ok)
            if not ok:  # without a reference we can still time candidates on fresh inputs
                _write_plain_inputs(task, io_dir)
        return self._tasks[task.workload_key]

    def _run(self, artifact: Artifact, io: _TaskIO, check: bool) -> MeasureResult:
        future = self._runner.submit(run_candidate, artifact.path, io.io_dir, io.num_args, io.num_outputs, check,
                                     self.options, artifact.prepack)
        return pool_outcome(future, "run")

    def _confirm(self, artifact: Artifact, io: _TaskIO, first: MeasureResult) -> MeasureResult:
        """``first`` with the repeats of ``confirm_runs`` more runs of ``artifact``, or the error of one."""
        costs = list(first.costs_s)
        for _ in range(self.settings.confirm_runs):
            again = self._run(artifact, io, check=False)
            if not again.ok:
                return MeasureResult.error(again.error_kind, f"on running it again: {again.error_msg}")
            costs.extend(again.costs_s)
        return MeasureResult(tuple(costs))


def _write_plain_inputs(task, io_dir: str) -> None:
    import numpy as np

    os.makedirs(io_dir, exist_ok=True)
    for index, array in enumerate(random_arguments(task.func, 0)):
        np.save(os.path.join(io_dir, f"arg{index}.npy"), array)


RUNNERS = {LocalRunner.kind: LocalRunner}


def create_runner(kind: str, backend, settings: MeasureSettings = MeasureSettings()) -> Runner:
    if kind not in RUNNERS:
        raise SettingsError(f"unknown runner {kind!r}; choose one of {', '.join(RUNNERS)}")
    return RUNNERS[kind](backend, settings)
