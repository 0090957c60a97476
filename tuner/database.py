"""The database role: where measurements are stored and read back.

``Cache`` (``cache.py``, SQLite) is the implementation; the ``Database`` protocol
lists what the tuning loop, the strategies' training and the build use of it, so
that another store (a shared server, say) can stand in. ``create_database(kind)``
lists the kinds: ``sqlite`` (a file, the default per-user path when none is given)
and ``memory`` (nothing is kept after the run).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol, runtime_checkable

from .errors import SettingsError
from .records import Record


@runtime_checkable
class Database(Protocol):
    def add_backend(self, backend) -> None: ...

    def add_workload(self, task, tir_json: str | None = None) -> None:
        """Remember a task's function so that its records can be applied without the model."""

    def add_many(self, records: Iterable[Record]) -> int:
        """Store records in one transaction; how many were new."""

    def records(self, backend_key: str | None = None, workload_key: str | None = None) -> Iterator[Record]:
        """Records, oldest first."""

    def best(self, backend_key: str, workload_key: str) -> Record | None: ...

    def summary(self) -> list[dict]:
        """One row per (backend, task): ``backend_key``, ``workload_key``, ``task_name``, ``records``,
        ``errors``, ``best_s``."""

    def workload(self, workload_key: str) -> dict | None: ...

    def features(self, backend_key: str, workload_key: str, feature_version: str) -> dict:
        """{config JSON: feature row} stored for a task."""

    def add_features(self, backend_key: str, workload_key: str, feature_version: str, items) -> None: ...

    def layout_choice(self, backend_key: str, model_key: str) -> dict | None:
        """The convolution layout plan that timing whole builds chose for a model (plain JSON)."""

    def set_layout_choice(self, backend_key: str, model_key: str, choice: dict) -> None: ...


def create_database(kind: str = "sqlite", path=None) -> Database:
    from .cache import Cache

    if kind == "sqlite":
        return Cache(path)
    if kind == "memory":
        if path is not None:
            raise SettingsError("a memory database takes no path")
        return Cache(":memory:")
    raise SettingsError(f"unknown database {kind!r}; choose one of sqlite, memory")
