"""Measuring: how candidates are built and timed (``MeasureSettings``), and one batch measured
by a builder and a runner together (``measure``).

Builds of a batch run in parallel first; only then are the artifacts timed, one at
a time, so that nothing else runs on the cores while a candidate is timed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SettingsError
from .messages import Artifact
from .records import ErrorKind, MeasureResult
from .remote import DevicesLostError


@dataclass(frozen=True)
class MeasureSettings:
    """How candidates are built and timed (docs/benchmarks.md has the measurements behind the defaults)."""

    build_workers: int | None = None  # default: the backend's core count
    cc: str | None = None  # the compiler that links candidates; None: found from the target (tuner.toolchain)
    # A few configs (no weight packing, heavy unrolling) compile for over a minute; past this limit a
    # build is recorded as a timeout, so that one such config does not eat the budget.
    build_timeout_s: float = 20.0
    run_timeout_s: float = 30.0
    # the unscheduled function, compiled and run once per task for the correctness checks; past this
    # the task's candidates are timed unchecked
    reference_timeout_s: float = 300.0
    repeat: int = 5
    min_repeat_ms: int = 20
    check_first: int = 4  # per task, the first candidates run are checked against the unscheduled function
    rtol: float = 1e-3
    atol: float = 1e-4
    # A candidate timed within ``confirm_within`` of its task's best so far is run ``confirm_runs`` more
    # times, each a fresh load on fresh inputs, and reported with the repeats of all its runs (a failure
    # on such a run is its result): one run can differ a lot from the next, so the best of hundreds of
    # single runs would be a lucky one.
    confirm_runs: int = 2
    confirm_within: float = 0.03
    # With the backend's cold timing, each repeat is one run after a cache flush: as many as fill
    # ``repeat`` x ``min_repeat_ms``, at least ``repeat`` and at most ``max_flushed_runs``.
    max_flushed_runs: int = 20
    # Untimed runs of each candidate before its timed ones: cores that idled while the batch compiled
    # run their first milliseconds slowly (docs/benchmarks.md, "Measuring").
    warm_up_ms: int = 40

    def __post_init__(self):
        if min(self.build_timeout_s, self.run_timeout_s, self.reference_timeout_s) <= 0:
            raise SettingsError(f"timeouts must be positive seconds, got build {self.build_timeout_s}, "
                                f"run {self.run_timeout_s}, reference {self.reference_timeout_s}")
        if self.repeat < 1 or self.min_repeat_ms < 0:
            raise SettingsError(f"repeat must be at least 1 and min_repeat_ms at least 0, got {self.repeat} "
                                f"and {self.min_repeat_ms}")
        if self.max_flushed_runs < 1:
            raise SettingsError(f"max_flushed_runs must be at least 1, got {self.max_flushed_runs}")
        if self.warm_up_ms < 0:
            raise SettingsError(f"warm_up_ms must be zero or more, got {self.warm_up_ms}")
        if self.confirm_runs < 0 or self.confirm_within < 0:
            raise SettingsError(f"confirm_runs and confirm_within must be zero or more, got "
                                f"{self.confirm_runs} and {self.confirm_within}")


def measure(builder, runner, task, configs, best_s: float | None = None) -> list[MeasureResult]:
    """Build ``configs`` of ``task`` with ``builder``, time what built with ``runner``: one result per
    config, in order. ``best_s``: the task's best mean cost known from before (see ``Runner.run``).
    A ``DevicesLostError`` leaves with one result per config, None for those not measured."""
    built = builder.build(task, configs)
    artifacts = [item for item in built if isinstance(item, Artifact)]
    try:
        timed = iter(runner.run(task, artifacts, best_s=best_s) if artifacts else [])
    except DevicesLostError as err:  # its results, None where unmeasured, become one per config
        partial = iter(err.results or [None] * len(artifacts))
        err.results = [next(partial) if isinstance(item, Artifact) else item for item in built]
        raise
    return [next(timed) if isinstance(item, Artifact) else item for item in built]


def pool_outcome(future, stage: str):
    """A worker's return value; a timeout or a dead worker process becomes a ``MeasureResult`` error.
    Other exceptions are bugs and propagate."""
    try:
        return future.result()
    except TimeoutError:
        return MeasureResult.error(ErrorKind.TIMEOUT, f"{stage} did not finish within its time limit")
    except ChildProcessError:
        return MeasureResult.error(ErrorKind.CRASH, f"the {stage} worker process died (crash or signal)")
