"""The remote runner: artifacts built here, timed on devices that TVM's RPC tracker hands out.

One thread per registered device requests a session for each candidate, uploads its
library, loads it and times it there with the local runner's protocol
(``workers.time_loaded``: the first candidates of a task checked against the
unscheduled function, run here; cold timing flushes the device's caches; a timing
near the task's best is confirmed by more runs). Sessions end after
``RemoteSettings.session_timeout_s``: a candidate that takes longer is a timeout.

Faults are data: when a session dies (the device was killed, lost its network, or
the candidate crashed its server), the candidate goes back to the queue for another
device, and after ``RemoteSettings.tries`` such ends it is stored as a crash. When
no device of the key is free within ``RemoteSettings.wait_s``, the threads stop and
``DevicesLostError`` carries what was measured.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass

from .errors import SettingsError
from .measure import MeasureSettings
from .messages import Artifact
from .records import ErrorKind, MeasureResult
from .remote import DevicesLostError, RemoteError, RemoteSettings, device_count, request_session
from .runner import References, TaskIO, timing_options
from .workers import error_message, load_arguments, load_expected, time_loaded

# TVM's RPC client reports a dead connection or a remote failure as one of these
_RPC_ERRORS = (RuntimeError, ValueError, OSError)


@dataclass
class _Job:
    index: int
    artifact: Artifact
    check: bool
    tries: int = 0  # sessions that died while measuring it


@dataclass(frozen=True)
class _SessionDied:
    message: str


class RPCRunner:
    """Times artifacts on the devices registered under ``remote.key`` (see the module docstring)."""

    kind = "rpc"

    def __init__(self, backend, settings: MeasureSettings = MeasureSettings(), remote: RemoteSettings | None = None):
        if remote is None:
            raise SettingsError("the rpc runner needs the tracker and the device key: --rpc HOST:PORT --device-key KEY")
        self.backend = backend
        self.settings = settings
        self.remote = remote
        device_count(remote)  # the tracker is up and knows the key, before any build
        # the reference runs here, on this machine's own target: the device's may not run here
        self._references = References({"kind": "llvm"}, settings.reference_timeout_s)
        self.options = timing_options(backend, settings)
        self._lock = threading.Lock()
        self.sessions = 0  # sessions that ended, with a result or with the device gone
        self.sessions_lost = 0  # of them, those the device died in

    def close(self) -> None:
        self._references.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, task, artifacts: list[Artifact], best_s: float | None = None) -> list[MeasureResult]:
        io = self._references.prepare(task)
        if best_s is not None:
            io.best_s = min(io.best_s, best_s)
        arrays = load_arguments(io.io_dir, io.num_args, io.num_outputs)
        expected = load_expected(io.io_dir, io.num_args, io.num_outputs) if io.reference_ok else None
        jobs = deque(_Job(index, artifact, io.take_check(self.settings.check_first))
                     for index, artifact in enumerate(artifacts))
        results: list[MeasureResult | None] = [None] * len(artifacts)
        lost: list[str] = []
        try:
            workers = min(len(artifacts), device_count(self.remote))
        except RemoteError as err:  # the key's devices are all gone before this batch
            raise DevicesLostError(str(err), results) from None
        bugs: list[BaseException] = []
        threads = [threading.Thread(target=self._serve_or_report, daemon=True,
                                    args=(bugs, jobs, results, io, arrays, expected, lost))
                   for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if bugs:  # not a device's fault: a bug here, raised where the caller sees it
            raise bugs[0]
        if any(result is None for result in results):
            raise DevicesLostError(lost[-1] if lost else "the devices stopped answering", results)
        for artifact in artifacts:
            if artifact.path is not None and os.path.exists(artifact.path):
                os.remove(artifact.path)
        return results

    def _serve_or_report(self, bugs: list, *args) -> None:
        try:
            self._serve(*args)
        except Exception as err:  # noqa: BLE001 - handed to the calling thread
            bugs.append(err)

    def _serve(self, jobs: deque, results: list, io: TaskIO, arrays, expected, lost: list) -> None:
        """One device's share: take a job, time it in a fresh session, until the queue is empty."""
        while True:
            with self._lock:
                if not jobs:
                    return
                job = jobs.popleft()
            try:
                session = request_session(self.remote)
            except DevicesLostError as err:
                with self._lock:
                    jobs.appendleft(job)
                    lost.append(str(err))
                return
            outcome = self._measure(session, job, io, arrays, expected)
            del session  # closes the connection; the device takes its next session
            with self._lock:
                self.sessions += 1
                if isinstance(outcome, _SessionDied):
                    self.sessions_lost += 1
                    job.tries += 1
                    if job.tries < self.remote.tries:
                        jobs.append(job)
                        continue
                    outcome = MeasureResult.error(ErrorKind.CRASH, f"the device's session ended on each of "
                                                                   f"{job.tries} tries: {outcome.message}")
                elif outcome.ok:
                    io.best_s = min(io.best_s, outcome.mean_s)
                results[job.index] = outcome

    def _measure(self, session, job: _Job, io: TaskIO, arrays, expected) -> MeasureResult | _SessionDied:
        started = time.monotonic()
        try:
            session.upload(job.artifact.path)
            module = session.load_module(os.path.basename(job.artifact.path))
            device = session.cpu(0)
            result = time_loaded(module, device, arrays, expected if job.check else None, self.options,
                                 job.artifact.prepack)
            if result.ok and result.mean_s <= io.best_s * (1 + self.settings.confirm_within):
                result = self._confirm(module, device, arrays, job, result)
            return result
        except _RPC_ERRORS as err:
            if "SessionTimeout" in str(err) or time.monotonic() - started >= self.remote.session_timeout_s * 0.95:
                return MeasureResult.error(ErrorKind.TIMEOUT, f"the device's session ended after "
                                                              f"{self.remote.session_timeout_s:.0f} s")
            if _alive(session):
                return MeasureResult.error(ErrorKind.RUN, error_message(err))
            return _SessionDied(error_message(err))

    def _confirm(self, module, device, arrays, job: _Job, first: MeasureResult) -> MeasureResult:
        """``first`` with the repeats of ``confirm_runs`` more timings (same session, same inputs)."""
        costs = list(first.costs_s)
        for _ in range(self.settings.confirm_runs):
            again = time_loaded(module, device, arrays, None, self.options, job.artifact.prepack)
            costs.extend(again.costs_s)
        return MeasureResult(tuple(costs))


def _alive(session) -> bool:
    """Whether the session still answers (after an error: the candidate's fault, not the device's). A
    remote function call, since ``Device.exist`` answers from this side."""
    try:
        session.get_function("runtime.NumThreads")()
        return True
    except _RPC_ERRORS:
        return False
