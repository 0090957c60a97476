"""The tuning-log cache: an SQLite database of measurements, keyed per backend and per task.

SQLite gives transactions, a write-ahead log so that several processes can
write at once, and indexed lookups of the best record of a (backend, task).
JSON lines are the interchange format (``export_jsonl``/``import_jsonl``).
Nothing is pickled. A file that is not one of our databases is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from .errors import CacheError
from .records import SCHEMA_VERSION, MeasureResult, Record, canonical_json

APPLICATION_ID = 0x54554E52  # "TUNR": marks the SQLite file as ours
EXPORT_FORMAT = "onnx-autotuner-cache"
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS backends (
    backend_key TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workloads (
    workload_key TEXT PRIMARY KEY,
    task_name TEXT NOT NULL,
    flops REAL NOT NULL,
    tir_json TEXT
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    backend_key TEXT NOT NULL,
    workload_key TEXT NOT NULL,
    task_name TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    result TEXT NOT NULL,
    mean_cost_s REAL,
    error_kind TEXT,
    versions TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (backend_key, workload_key, config_hash)
);
CREATE INDEX IF NOT EXISTS records_best ON records (backend_key, workload_key, mean_cost_s);
CREATE TABLE IF NOT EXISTS features (
    backend_key TEXT NOT NULL,
    workload_key TEXT NOT NULL,
    feature_version TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (backend_key, workload_key, feature_version, config_hash)
);
CREATE TABLE IF NOT EXISTS peaks (
    backend_key TEXT PRIMARY KEY,
    gflops REAL NOT NULL,
    measured_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS layout_choices (
    backend_key TEXT NOT NULL,
    model_key TEXT NOT NULL,
    choice TEXT NOT NULL,
    measured_at REAL NOT NULL,
    PRIMARY KEY (backend_key, model_key)
);
"""


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/onnx-autotuner/tuning.sqlite`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onnx-autotuner" / "tuning.sqlite"


def config_hash(config_json: str) -> str:
    return hashlib.sha256(config_json.encode()).hexdigest()[:20]


class Cache:
    """A tuning-log database at ``path`` (created if missing; ``":memory:"``: kept in memory only)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self._conn = _open(self.path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------
    def add_backend(self, backend) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO backends VALUES (?, ?)", (backend.key, backend.to_json()))

    def add_workload(self, task, tir_json: str | None = None) -> None:
        """Remember a task's function (TVM's JSON form) so records can be re-applied without the model."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO workloads VALUES (?, ?, ?, ?)",
                         (task.workload_key, task.name, task.flops, tir_json))

    def add(self, record: Record) -> bool:
        """Store one record; False when the same config of that task and backend is already stored."""
        return self.add_many([record]) == 1

    def add_many(self, records) -> int:
        """Store records in one transaction; returns how many were new."""
        rows = [_record_row(record) for record in records]
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO records (backend_key, workload_key, task_name, config, config_hash,"
                " result, mean_cost_s, error_kind, versions, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            return conn.total_changes - before

    def add_features(self, backend_key: str, workload_key: str, feature_version: str, items) -> None:
        """Store feature rows (float32) of configs: ``items`` is [(config JSON, row), ...]."""
        import numpy as np

        rows = [(backend_key, workload_key, feature_version, config, config_hash(config),
                 np.asarray(row, dtype="<f4").tobytes()) for config, row in items]
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO features VALUES (?, ?, ?, ?, ?, ?)", rows)

    # -- reading ---------------------------------------------------------------------------
    def features(self, backend_key: str, workload_key: str, feature_version: str) -> dict:
        """{config JSON: float32 row} stored for this task on this backend."""
        import numpy as np

        rows = self._conn.execute(
            "SELECT config, data FROM features WHERE backend_key = ? AND workload_key = ? AND feature_version = ?",
            (backend_key, workload_key, feature_version))
        return {config: np.frombuffer(data, dtype="<f4").copy() for config, data in rows}

    def best(self, backend_key: str, workload_key: str) -> Record | None:
        """The fastest successful record of this task on this backend (indexed lookup)."""
        row = self._conn.execute(
            "SELECT * FROM records WHERE backend_key = ? AND workload_key = ? AND mean_cost_s IS NOT NULL"
            " ORDER BY mean_cost_s LIMIT 1", (backend_key, workload_key)).fetchone()
        return _row_record(row) if row else None

    def records(self, backend_key: str | None = None, workload_key: str | None = None):
        """All records, optionally of one backend and/or one task, oldest first."""
        where, args = _where(backend_key=backend_key, workload_key=workload_key)
        for row in self._conn.execute(f"SELECT * FROM records {where} ORDER BY id", args):
            yield _row_record(row)

    def count(self, backend_key: str | None = None, workload_key: str | None = None) -> int:
        where, args = _where(backend_key=backend_key, workload_key=workload_key)
        return self._conn.execute(f"SELECT COUNT(*) FROM records {where}", args).fetchone()[0]

    def has_config(self, backend_key: str, workload_key: str, config_json: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM records WHERE backend_key = ? AND workload_key = ? AND config_hash = ?",
            (backend_key, workload_key, config_hash(canonical_json(json.loads(config_json))))).fetchone()
        return row is not None

    def peak(self, backend_key: str) -> float | None:
        """The measured peak GFLOP/s of this backend's machine (``tuner.peak``), if stored."""
        row = self._conn.execute("SELECT gflops FROM peaks WHERE backend_key = ?", (backend_key,)).fetchone()
        return float(row[0]) if row else None

    def set_peak(self, backend_key: str, gflops: float) -> None:
        import time

        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO peaks VALUES (?, ?, ?)", (backend_key, gflops, time.time()))

    def layout_choice(self, backend_key: str, model_key: str) -> dict | None:
        """The convolution layout plan chosen for a model by timing its builds (``tuner.plan_timing``)."""
        row = self._conn.execute("SELECT choice FROM layout_choices WHERE backend_key = ? AND model_key = ?",
                                 (backend_key, model_key)).fetchone()
        return json.loads(row[0]) if row else None

    def set_layout_choice(self, backend_key: str, model_key: str, choice: dict) -> None:
        """Keep ``choice`` (plain JSON) for the model, replacing an older one. Not exported with the
        records: tuning remakes it."""
        import time

        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO layout_choices VALUES (?, ?, ?, ?)",
                         (backend_key, model_key, canonical_json(choice), time.time()))

    def backend(self, backend_key: str) -> str | None:
        row = self._conn.execute("SELECT description FROM backends WHERE backend_key = ?", (backend_key,)).fetchone()
        return row[0] if row else None

    def backends(self) -> dict[str, str]:
        """Every backend's description (JSON text), by key."""
        return dict(self._conn.execute("SELECT backend_key, description FROM backends").fetchall())

    def workload(self, workload_key: str) -> dict | None:
        row = self._conn.execute("SELECT * FROM workloads WHERE workload_key = ?", (workload_key,)).fetchone()
        return dict(row) if row else None

    def summary(self) -> list[dict]:
        """One row per (backend, task): record and error counts and the best mean cost."""
        rows = self._conn.execute(
            "SELECT backend_key, workload_key, task_name, COUNT(*) AS records,"
            " SUM(error_kind IS NOT NULL) AS errors, MIN(mean_cost_s) AS best_s"
            " FROM records GROUP BY backend_key, workload_key ORDER BY backend_key, task_name").fetchall()
        return [dict(row) for row in rows]

    # -- interchange -----------------------------------------------------------------------
    def export_jsonl(self, stream, backend_key: str | None = None) -> int:
        """Write a header line, then backends, workloads and records as JSON lines. Returns the record count."""
        stream.write(json.dumps({"format": EXPORT_FORMAT, "schema_version": SCHEMA_VERSION}) + "\n")
        where, args = _where(backend_key=backend_key)
        for row in self._conn.execute(f"SELECT * FROM backends {where}", args):
            stream.write(json.dumps({"type": "backend", **dict(row)}) + "\n")
        for row in self._conn.execute("SELECT * FROM workloads"):
            stream.write(json.dumps({"type": "workload", **dict(row)}) + "\n")
        count = 0
        for record in self.records(backend_key=backend_key):
            stream.write(json.dumps({"type": "record", **record.to_json()}) + "\n")
            count += 1
        return count

    def import_jsonl(self, stream, source: str = "<stream>") -> tuple[int, int]:
        """Read an export; all lines are checked before anything is written. Returns (new, already stored)."""
        backends, workloads, records = _parse_export(stream, source)
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO backends VALUES (:backend_key, :description)", backends)
            conn.executemany("INSERT OR IGNORE INTO workloads VALUES (:workload_key, :task_name, :flops, :tir_json)",
                             workloads)
        new = self.add_many(records)
        return new, len(records) - new

    def _write(self):
        return _Transaction(self._conn)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: takes the write lock up front, waiting up to the busy timeout."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _open(path: Path) -> sqlite3.Connection:
    in_memory = str(path) == ":memory:"  # SQLite's name for a database that is never written to disk
    if not in_memory and path.exists() and not path.is_file():
        raise CacheError(f"cache path {path} is not a file")
    if not in_memory:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _initialize(conn, path)
    except sqlite3.DatabaseError as err:
        raise CacheError(f"{path} is not a tuning cache: {err}") from None
    return conn


def _initialize(conn: sqlite3.Connection, path: Path) -> None:
    """``_ensure_schema``, again until the busy timeout where SQLite answers "locked" at once: it does
    not wait where waiting could deadlock, as when several processes open a new cache and switch it to
    WAL together (the test that writes from two processes failed so once, in a full test run). Both
    steps can simply run again."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            _ensure_schema(conn, path)
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and tables == 0:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif app_id != APPLICATION_ID:
            raise CacheError(f"{path} is an SQLite database of another application, not a tuning cache")
        elif version > SCHEMA_VERSION:
            raise CacheError(f"{path} has cache schema {version}, newer than this version supports ({SCHEMA_VERSION})")
        for statement in _SCHEMA.split(";"):  # idempotent: adds tables that older files lack
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("PRAGMA journal_mode = WAL")


def _where(**columns) -> tuple[str, tuple]:
    given = [(name, value) for name, value in columns.items() if value is not None]
    if not given:
        return "", ()
    return "WHERE " + " AND ".join(f"{name} = ?" for name, _ in given), tuple(v for _, v in given)


def _record_row(record: Record) -> tuple:
    return (record.backend_key, record.workload_key, record.task_name, record.config, config_hash(record.config),
            json.dumps(record.result.to_json()), record.result.mean_s,
            record.result.error_kind.value if record.result.error_kind else None,
            json.dumps(record.versions, sort_keys=True), record.created_at)


def _row_record(row) -> Record:
    return Record(row["backend_key"], row["workload_key"], row["task_name"], row["config"],
                  MeasureResult.from_json(json.loads(row["result"])), json.loads(row["versions"]),
                  row["created_at"])


def _parse_export(stream, source: str):
    backends, workloads, records = [], [], []
    header_seen = False
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not header_seen:
                _check_header(data)
                header_seen = True
                continue
            kind = data.pop("type")
            if kind == "backend":
                backends.append({"backend_key": str(data["backend_key"]), "description": str(data["description"])})
            elif kind == "workload":
                workloads.append({"workload_key": str(data["workload_key"]), "task_name": str(data["task_name"]),
                                  "flops": float(data["flops"]), "tir_json": data.get("tir_json")})
            elif kind == "record":
                records.append(Record.from_json(data))
            else:
                raise ValueError(f"unknown line type {kind!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CacheError(f"{source} line {number} is not a valid cache export line: {err}") from None
    if not header_seen:
        raise CacheError(f"{source} is empty, not a cache export")
    return backends, workloads, records


def _check_header(data) -> None:
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ValueError(f"the first line must be the header {{\"format\": \"{EXPORT_FORMAT}\", ...}}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema version {data.get('schema_version')!r} is not supported ({SCHEMA_VERSION})")
