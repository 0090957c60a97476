import io
import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

import tuner
from tuner.cache import Cache
from tuner.records import MeasureResult, Record


def _record(config=1, cost=1e-3, backend="b1", workload="w1", error=None):
    result = MeasureResult.error(error, "boom") if error else MeasureResult((cost, cost * 1.1))
    return Record(backend, workload, "task", json.dumps({"rule": "r", "knobs": {"k": config}}), result,
                  {"tvm": "0.27"})


def test_record_json_round_trip():
    for record in (_record(), _record(error="timeout")):
        assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_measure_result_refuses_stand_in_numbers():
    with pytest.raises(ValueError):
        MeasureResult((float("inf"),))
    with pytest.raises(ValueError):
        MeasureResult(())
    with pytest.raises(ValueError):
        MeasureResult.error("weird", "x")


def test_best_is_per_backend_and_task(cache):
    cache.add_many([_record(1, 3e-3), _record(2, 1e-3), _record(3, error="build"),
                    _record(4, 1e-6, backend="other"), _record(5, 1e-7, workload="w2")])
    best = cache.best("b1", "w1")
    assert json.loads(best.config)["knobs"]["k"] == 2
    assert cache.best("b1", "missing") is None
    assert cache.best("nobody", "w1") is None
    assert cache.count("b1", "w1") == 3


def test_duplicate_config_is_not_stored_twice(cache):
    assert cache.add(_record(1, 3e-3))
    assert not cache.add(_record(1, 1e-3))
    assert cache.has_config("b1", "w1", json.dumps({"knobs": {"k": 1}, "rule": "r"}))
    assert cache.count() == 1


def test_reopen_keeps_records(tmp_path):
    with Cache(tmp_path / "c.sqlite") as first:
        first.add(_record())
    with Cache(tmp_path / "c.sqlite") as second:
        assert second.count() == 1


def test_foreign_files_are_refused_and_left_alone(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a database\n" * 20)
    with pytest.raises(tuner.CacheError, match="notes.txt"):
        Cache(text)
    assert text.read_text().startswith("these are my notes")

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(tuner.CacheError, match="other.sqlite.*another application"):
        Cache(other)
    conn = sqlite3.connect(other)
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("people",)]


def test_export_import_round_trip(cache, tmp_path, backend):
    cache.add_backend(backend)
    cache.add_many([_record(1, 2e-3, backend=backend.key), _record(2, error="timeout", backend=backend.key)])
    stream = io.StringIO()
    assert cache.export_jsonl(stream) == 2
    with Cache(tmp_path / "copy.sqlite") as copy:
        stream.seek(0)
        assert copy.import_jsonl(stream) == (2, 0)
        stream.seek(0)
        assert copy.import_jsonl(stream) == (0, 2)
        assert list(copy.records()) == list(cache.records())
        assert copy.backend(backend.key) == backend.to_json()


@pytest.mark.parametrize("content, fragment", [
    ("", "empty"),
    ('{"format": "something-else"}\n', "line 1"),
    ('{"format": "onnx-autotuner-cache", "schema_version": 99}\n', "schema version"),
    ('{"format": "onnx-autotuner-cache", "schema_version": 1}\n{"type": "record", "oops": 1}\n', "line 2"),
    ('{"format": "onnx-autotuner-cache", "schema_version": 1}\nnot json\n', "line 2"),
])
def test_bad_import_loses_nothing(cache, content, fragment):
    cache.add(_record())
    with pytest.raises(tuner.CacheError, match=fragment):
        cache.import_jsonl(io.StringIO(content), source="bad.jsonl")
    assert cache.count() == 1


WRITER = textwrap.dedent("""
    import json, sys
    from tuner.cache import Cache
    from tuner.records import MeasureResult, Record
    path, worker = sys.argv[1], int(sys.argv[2])
    with Cache(path) as cache:
        for i in range(200):
            config = json.dumps({"rule": "r", "knobs": {"worker": worker, "i": i}})
            cache.add(Record("b", "w", "t", config, MeasureResult((1e-3 + i * 1e-6,)), {}))
""")


def test_a_cache_locked_while_it_opens_is_opened_once_the_lock_goes(tmp_path, monkeypatch):
    import sqlite3

    import tuner.cache

    real, answers = tuner.cache._ensure_schema, iter([sqlite3.OperationalError("database is locked")] * 3)

    def locked_at_first(conn, path):
        answer = next(answers, None)
        if answer is not None:
            raise answer
        real(conn, path)

    monkeypatch.setattr(tuner.cache, "_ensure_schema", locked_at_first)
    with Cache(tmp_path / "new.sqlite") as cache:
        cache.add(_record())
        assert cache.count() == 1
    assert next(answers, None) is None


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "shared.sqlite"
    workers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)], stderr=subprocess.PIPE, text=True)
               for w in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    with Cache(path) as cache:
        assert cache.count("b", "w") == 400


def test_cli_cache_commands(tmp_path, backend):
    from conftest import run_cli

    db = tmp_path / "c.sqlite"
    with Cache(db) as cache:
        cache.add_many([_record(1, 2e-3, backend=backend.key), _record(2, 1e-3, backend=backend.key)])
    listing = run_cli("cache", "list", "--cache", db)
    assert listing.returncode == 0 and "2 records" in listing.stdout and "best 1.050 ms" in listing.stdout
    export = tmp_path / "out.jsonl"
    assert run_cli("cache", "export", "--cache", db, "-o", export).returncode == 0
    imported = run_cli("cache", "import", export, "--cache", tmp_path / "new.sqlite")
    assert imported.returncode == 0 and "imported 2 new records" in imported.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text("garbage\n")
    result = run_cli("cache", "import", bad, "--cache", db)
    assert result.returncode == 2 and "bad.jsonl line 1" in result.stderr
    notdb = tmp_path / "notdb"
    notdb.write_text("x" * 5000)
    result = run_cli("cache", "list", "--cache", notdb)
    assert result.returncode == 2 and "notdb" in result.stderr and "Traceback" not in result.stderr
