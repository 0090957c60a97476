"""Remote devices: a tracker and RPC servers on 127.0.0.1, tuning, building and benchmarking through them."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import pytest

from benchmarks import models as bm
from tests.conftest import run_cli
from benchmarks.local_devices import devices

pytestmark = pytest.mark.slow

AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "num-cores": 4}


@pytest.fixture
def small_model(tmp_path):
    import onnx

    path = tmp_path / "conv.onnx"
    onnx.save(bm.conv_model(in_channels=8, out_channels=16, size=16), path)
    return path


@pytest.fixture(scope="module")
def farm():
    """Two devices for the tests that leave them serving: starting a tracker and servers takes seconds."""
    with devices(2) as shared:
        yield shared


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _records(cache_path):
    from tuner.cache import Cache

    with Cache(cache_path) as cache:
        return list(cache.records()), cache.backends()


def test_tune_through_two_devices_then_build_from_their_records(small_model, tmp_path, cli):
    cache_path = tmp_path / "cache.sqlite"
    with devices(2) as farm:
        tuned = run_cli("tune", small_model, "--rpc", farm.address, "--device-key", farm.key, "--trials", 6,
                        "--search", "random", "--cache", cache_path, "--quiet")
        assert tuned.returncode == 0, tuned.stderr
        pids = [server.proc._proc.pid for server in farm.servers] + [farm.tracker.proc._proc.pid]
    assert not any(_running(pid) for pid in pids)  # nothing is left listening
    records, backends = _records(cache_path)
    (key, description), = backends.items()
    assert json.loads(description)["device_key"] == farm.key and f"-{farm.key}-" in key
    assert len(records) == 6 and {r.backend_key for r in records} == {key}
    assert all(r.result.ok for r in records)

    from tuner.backend import resolve_backend

    assert resolve_backend("host").key != key  # never mixed with this machine's records
    out = tmp_path / "model.so"
    built = cli("build", small_model, "--device-key", farm.key, "--cache", cache_path, "-o", out)
    assert built.returncode == 0, built.stderr
    assert f"for {key}" in built.stdout and "1/1 tasks had a tuning record" in built.stdout
    assert json.loads((tmp_path / "model.so.json").read_text())["backend_key"] == key
    assert len(_records(cache_path)[0]) == 6  # the build measured nothing
    other = cli("build", small_model, "--device-key", "other", "--cache", cache_path, "-o", out)
    assert other.returncode == 2 and "holds no cold-timed records of device key 'other'" in other.stderr


def test_a_device_killed_mid_run_loses_nothing(backend, tmp_path):
    import tuner
    from tuner.cache import Cache
    from tuner.measure import MeasureSettings
    from tuner.remote import remote_backend
    from tuner.rpc_runner import RPCRunner
    from tuner.tune import TuneSettings, tune

    model = tuner.load(bm.conv_model(in_channels=8, out_channels=16, size=16))
    with devices(2) as farm, Cache(tmp_path / "cache.sqlite") as cache:
        remote = farm.remote()
        device_backend = remote_backend("host", remote, "cold")
        # each candidate in flight for half a second at least; the kill waits 0.2 s past the session's start,
        # so that it finds a candidate running rather than a session still being set up
        with RPCRunner(device_backend, MeasureSettings(warm_up_ms=500), remote=remote) as runner:
            def kill_when_busy():
                deadline = time.monotonic() + 60
                while not farm.busy(1) and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)
                farm.kill(1)

            killer = threading.Thread(target=kill_when_busy)
            killer.start()
            report = tune(model, device_backend, cache, TuneSettings(trials=8, search="random", batch_size=8),
                          runner=runner, progress=False)
            killer.join()
            assert runner.sessions_lost >= 1  # the kill hit a candidate in flight
            assert runner.sessions == 8 + runner.sessions_lost  # each config timed to the end once
        records = list(cache.records())
    assert report.measured == 8 and len(records) == 8
    assert all(record.result.ok for record in records), [r.result.error_msg for r in records]


class _Tracker:
    """Stands in for TVM's tracker client: each request gives the next of ``outcomes`` (raised if an error)."""

    def __init__(self, outcomes):
        self.outcomes = outcomes

    def request(self, key, **options):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self):
        pass


def test_a_device_that_dies_as_its_session_starts_is_asked_past(monkeypatch):
    import tuner.remote
    from tuner.remote import DevicesLostError, RemoteSettings, request_session

    outcomes = [ConnectionRefusedError("the device handed out is gone"), "a session"]
    monkeypatch.setattr(tuner.remote, "connect_tracker", lambda remote, timeout_s: _Tracker(outcomes))
    assert request_session(RemoteSettings("127.0.0.1", 9190, "k", wait_s=5)) == "a session"

    outcomes[:] = [ConnectionRefusedError("gone")] * 100
    started = time.monotonic()
    with pytest.raises(DevicesLostError, match="no device of key 'k' became free .* within 1 s"):
        request_session(RemoteSettings("127.0.0.1", 9190, "k", wait_s=1))
    assert 1 <= time.monotonic() - started < 3 and len(outcomes) < 100


def test_all_devices_gone_stops_with_what_was_measured_and_a_rerun_goes_on(tmp_path):
    import tuner
    from tuner.cache import Cache
    from tuner.remote import DevicesLostError, remote_backend
    from tuner.rpc_runner import RPCRunner
    from tuner.tune import TuneSettings, tune

    model = tuner.load(bm.conv_model(in_channels=8, out_channels=16, size=16))
    settings = TuneSettings(trials=6, search="random", batch_size=6)
    with Cache(tmp_path / "cache.sqlite") as cache:
        with devices(1) as farm:
            remote = farm.remote(wait_s=3)
            device_backend = remote_backend("host", remote, "cold")
            with RPCRunner(device_backend, remote=remote) as runner:
                killer = threading.Timer(0, lambda: (_wait_for(lambda: runner.sessions >= 3), farm.kill(0)))
                killer.start()
                with pytest.raises(DevicesLostError, match="all stored; run the same command again"):
                    tune(model, device_backend, cache, settings, runner=runner, progress=False)
                killer.join()
        stored = cache.count(device_backend.key)
        assert 1 <= stored < 6 and all(r.result.ok for r in cache.records())
        with devices(1) as farm:
            remote = farm.remote()
            with RPCRunner(device_backend, remote=remote) as runner:
                report = tune(model, device_backend, cache, settings, runner=runner, progress=False)
        assert report.measured == 6 - stored and cache.count(device_backend.key) == 6


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_bench_times_on_the_device_and_compares_outputs_here(small_model, tmp_path, farm):
    result = run_cli("bench", small_model, "--rpc", farm.address, "--device-key", farm.key, "--repeat", 2,
                     "--profile", "--json", tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["device_key"] == farm.key and report["tuner_ms"] > 0 and report["onnxruntime_ms"] is None
    assert report["max_rel_err"] < 1e-4
    assert "outputs against ONNX Runtime run here" in result.stdout
    (row,) = report["profile"]  # the model's one task, its kernel timed on the device
    assert row["task_name"] == "fused_conv2d_add_relu" and row["ms_per_run"] > 0 and row["source"] == "default"
    assert "each task's kernel timed alone on the device" in result.stdout


def test_unreachable_tracker_unknown_key_and_foreign_target_are_one_line(small_model, cli, farm):
    tracker_down = cli("tune", small_model, "--rpc", f"127.0.0.1:{_free_port()}", "--device-key", "x",
                       "--trials", 1)
    assert tracker_down.returncode == 2 and "cannot reach the RPC tracker" in tracker_down.stderr
    unknown = cli("tune", small_model, "--rpc", farm.address, "--device-key", "nosuch", "--trials", 1)
    other_arch = cli("tune", small_model, "--rpc", farm.address, "--device-key", farm.key,
                     "--target", json.dumps(AARCH64), "--trials", 1)
    assert unknown.returncode == 2 and "no device is registered under key 'nosuch'" in unknown.stderr
    assert f"keys there: {farm.key}" in unknown.stderr
    assert other_arch.returncode == 2 and "the target is for aarch64-linux-gnu but the devices" in other_arch.stderr
    foreign = cli("tune", small_model, "--target", json.dumps(AARCH64), "--trials", 1)
    assert foreign.returncode == 2 and "--rpc HOST:PORT --device-key KEY" in foreign.stderr
    for result in (tracker_down, unknown, other_arch, foreign):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="no AArch64 cross compiler: apt-get install gcc-aarch64-linux-gnu (.ci/run does)")
def test_cross_compiles_an_aarch64_library(small_model, tmp_path):
    out = tmp_path / "model.so"
    result = run_cli("build", small_model, "--target", json.dumps(AARCH64), "-o", out)
    assert result.returncode == 0, result.stderr
    header = out.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64


def test_a_missing_cross_compiler_is_named(small_model, tmp_path, cli):
    target = dict(AARCH64, mtriple="riscv64-linux-gnu", mcpu="generic-rv64")
    result = cli("build", small_model, "--target", json.dumps(target), "-o", tmp_path / "m.so")
    assert result.returncode == 2 and "no cross compiler for riscv64-linux-gnu" in result.stderr
    assert "--cc PATH" in result.stderr


def test_wrong_hung_and_crashing_candidates_become_errors_on_the_devices():
    import cloudpickle

    import search_spaces
    import tuner
    from tests import test_measure
    from tuner.builder import LocalBuilder
    from tuner.measure import MeasureSettings, measure
    from tuner.remote import remote_backend
    from tuner.rpc_runner import RPCRunner

    cloudpickle.register_pickle_by_value(test_measure)
    settings = MeasureSettings(repeat=2, min_repeat_ms=1, max_flushed_runs=2)
    with devices(2) as farm:  # its own: a hung candidate's session ends the server it ran on
        remote = farm.remote(session_timeout_s=5)
        device_backend = remote_backend("host", remote, "cold")
        task = tuner.partition(tuner.load(bm.gemm_model(batch=4, in_features=24, out_features=8)),
                               device_backend).tasks[0]
        default = search_spaces.space_for(task.func, device_backend.tvm_target()).default_config()
        configs = [default.replace(inject=kind) if kind else default for kind in ("wrong", None, "hang", "crash")]
        with LocalBuilder(device_backend, settings, build_fn=test_measure.inject_build) as builder, \
                RPCRunner(device_backend, settings, remote) as runner:
            wrong, good, hang, crash = measure(builder, runner, task, configs)
    assert wrong.error_kind == "wrong_result" and "differs" in wrong.error_msg
    assert good.ok
    assert hang.error_kind == "timeout" and "session ended after 5 s" in hang.error_msg
    assert crash.error_kind == "crash" and "on each of 2 tries" in crash.error_msg


def test_a_bug_while_measuring_is_raised_not_taken_for_a_lost_device(monkeypatch, farm):
    import tuner
    import tuner.rpc_runner
    from tuner.measure import MeasureSettings
    from tuner.messages import Artifact
    from tuner.remote import remote_backend
    from tuner.rpc_runner import RPCRunner

    def broken(remote):
        raise ZeroDivisionError("a bug in the session code")

    remote = farm.remote()
    device_backend = remote_backend("host", remote, "cold")
    task = tuner.partition(tuner.load(bm.gemm_model(batch=4, in_features=24, out_features=8)),
                           device_backend).tasks[0]
    with RPCRunner(device_backend, MeasureSettings(), remote) as runner:
        monkeypatch.setattr(tuner.rpc_runner, "request_session", broken)
        with pytest.raises(ZeroDivisionError, match="a bug in the session code"):
            runner.run(task, [Artifact(config=None, path=None)])
