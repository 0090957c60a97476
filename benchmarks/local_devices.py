"""A tracker and RPC servers on 127.0.0.1 (TVM's own, as a user starts them), for tests and benchmarks."""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager

import psutil


class Devices:
    def __init__(self, tracker, servers, key):
        self.tracker, self.servers, self.key = tracker, servers, key

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.tracker.port}"

    def remote(self, **options):
        from tuner.remote import RemoteSettings

        return RemoteSettings("127.0.0.1", self.tracker.port, self.key, **options)

    def busy(self, index: int) -> bool:
        """Whether server ``index`` is serving a session (its serving process is running)."""
        return bool(psutil.Process(self.servers[index].proc._proc.pid).children(recursive=True))

    def kill(self, index: int) -> None:
        """Kill server ``index`` and its sessions, as a device that loses power."""
        self.servers[index].terminate()


@contextmanager
def devices(count: int, key: str = "testdevice", timeout_s: float = 30.0, threads: int | None = None):
    """``count`` servers under ``key`` behind a tracker, on free ports of 127.0.0.1; all stopped after.
    ``threads``: each server's TVM thread pool (``TVM_NUM_THREADS``, as a user starts a server with)."""
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    from tuner.remote import RemoteSettings, device_count

    base = random.randint(20000, 50000)
    tracker = Tracker(host="127.0.0.1", port=base, port_end=base + 200, silent=True)
    servers = []
    saved = os.environ.get("TVM_NUM_THREADS")
    if threads is not None:
        os.environ["TVM_NUM_THREADS"] = str(threads)  # the servers' processes inherit it
    try:
        for _ in range(count):
            servers.append(Server(host="127.0.0.1", port=base + 200, port_end=base + 400, key=key,
                                  tracker_addr=("127.0.0.1", tracker.port), silent=True))
        _restore(saved)
        remote = RemoteSettings("127.0.0.1", tracker.port, key)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if device_count(remote) == count:
                    break
            except Exception:  # noqa: BLE001 - not registered yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} RPC servers did not register within {timeout_s} s")
            time.sleep(0.1)
        yield Devices(tracker, servers, key)
    finally:
        _restore(saved)
        for server in servers:
            server.terminate()
        tracker.terminate()


def _restore(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("TVM_NUM_THREADS", None)
    else:
        os.environ["TVM_NUM_THREADS"] = saved
