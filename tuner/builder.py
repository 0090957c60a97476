"""The builder role: configs of a task -> built artifacts, compiled in parallel processes.

A builder returns, for each config, an ``Artifact`` (a library to time) or the
``MeasureResult`` error that ended its build (an invalid config, a failed
compilation, a crash or a timeout). ``create_builder(kind)`` lists the kinds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Protocol, runtime_checkable

from .errors import SettingsError
from .measure import MeasureSettings, pool_outcome
from .messages import Artifact
from .records import MeasureResult
from .toolchain import find_compiler
from .workers import build_candidate


@runtime_checkable
class Builder(Protocol):
    def build(self, task, configs) -> list[Artifact | MeasureResult]:
        """One artifact or error per config, in order."""

    def close(self) -> None:
        """Release worker processes and files."""


class LocalBuilder:
    """Compiles on this machine with ``settings.build_workers`` processes (default: the backend's
    cores); a build past ``settings.build_timeout_s`` is a timeout. ``build_fn`` runs in a worker:
    ``(tir_json, config_json, target, path, cc) -> Artifact | MeasureResult`` (tests inject failures).
    A target of another architecture is cross-compiled (``tuner.toolchain``)."""

    kind = "local"

    def __init__(self, backend, settings: MeasureSettings = MeasureSettings(), build_fn=build_candidate):
        from tvm.support.popen_pool import PopenPoolExecutor

        self.backend = backend
        self.settings = settings
        self.build_fn = build_fn
        self.cc = find_compiler(backend.target, settings.cc)
        self.work_dir = tempfile.mkdtemp(prefix="tuner-build-")
        self._pool = PopenPoolExecutor(max_workers=settings.build_workers or backend.num_cores,
                                       timeout=settings.build_timeout_s)
        self._count = 0

    def build(self, task, configs) -> list[Artifact | MeasureResult]:
        import tvm

        tir_json = tvm.ir.save_json(task.func)
        futures = []
        for config in configs:
            self._count += 1
            path = os.path.join(self.work_dir, f"candidate{self._count}.so")
            futures.append(self._pool.submit(self.build_fn, tir_json, config.to_json(), self.backend.target, path,
                                            self.cc))
        return [pool_outcome(future, "build") for future in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


BUILDERS = {LocalBuilder.kind: LocalBuilder}


def create_builder(kind: str, backend, settings: MeasureSettings = MeasureSettings()) -> Builder:
    if kind not in BUILDERS:
        raise SettingsError(f"unknown builder {kind!r}; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[kind](backend, settings)
