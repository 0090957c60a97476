"""Plain, serializable values for what the tuner measures and stores."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from enum import Enum

SCHEMA_VERSION = 1


class ErrorKind(str, Enum):
    """Why a candidate has no timing. Anything else a builder or runner meets is a bug and propagates.
    The values are what the cache stores."""

    INVALID_CONFIG = "invalid_config"  # the config does not fit the task's search space
    BUILD = "build"  # compilation failed
    RUN = "run"  # the kernel raised an error when run
    CRASH = "crash"  # the worker process died (a segfault, an abort, a signal)
    TIMEOUT = "timeout"  # building or running took longer than its limit
    WRONG_RESULT = "wrong_result"  # outputs differ from the unscheduled function's

    def __str__(self) -> str:
        return self.value


ERROR_KINDS = tuple(kind.value for kind in ErrorKind)


@dataclass(frozen=True)
class MeasureResult:
    """Costs of the repeats in seconds, or an error kind with its message. Never a stand-in number."""

    costs_s: tuple[float, ...] = ()
    error_kind: ErrorKind | None = None
    error_msg: str = ""

    def __post_init__(self):
        if self.error_kind is None:
            if not self.costs_s or not all(math.isfinite(c) and c > 0 for c in self.costs_s):
                raise ValueError(f"a successful MeasureResult needs positive finite costs, got {self.costs_s}")
        elif self.error_kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {self.error_kind!r}; expected one of {', '.join(ERROR_KINDS)}")
        else:
            object.__setattr__(self, "error_kind", ErrorKind(self.error_kind))

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @property
    def mean_s(self) -> float | None:
        return sum(self.costs_s) / len(self.costs_s) if self.ok else None

    @classmethod
    def error(cls, kind: ErrorKind | str, message: str) -> "MeasureResult":
        return cls((), kind, message)

    def to_json(self) -> dict:
        if self.ok:
            return {"costs_s": list(self.costs_s)}
        return {"error_kind": self.error_kind, "error_msg": self.error_msg}

    @classmethod
    def from_json(cls, data: dict) -> "MeasureResult":
        if data.get("error_kind"):
            return cls.error(data["error_kind"], data.get("error_msg", ""))
        return cls(tuple(float(c) for c in data["costs_s"]))


@dataclass(frozen=True)
class Record:
    """One measurement of one config of one task on one backend.

    ``config`` is the config as canonical JSON text (see ``search_spaces.Config.to_json``).
    """

    backend_key: str
    workload_key: str
    task_name: str
    config: str
    result: MeasureResult
    versions: dict = field(default_factory=dict, compare=False)
    created_at: float = field(default_factory=time.time, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "config", canonical_json(json.loads(self.config)))

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "backend_key": self.backend_key,
            "workload_key": self.workload_key,
            "task_name": self.task_name,
            "config": json.loads(self.config),
            "result": self.result.to_json(),
            "versions": self.versions,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"record schema version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
        return cls(
            backend_key=str(data["backend_key"]),
            workload_key=str(data["workload_key"]),
            task_name=str(data["task_name"]),
            config=canonical_json(data["config"]),
            result=MeasureResult.from_json(data["result"]),
            versions=dict(data.get("versions", {})),
            created_at=float(data["created_at"]),
        )


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
