"""Remote devices behind TVM's RPC tracker: sessions, what a device says of itself, its backend.

A user starts the tracker (``python -m tvm.exec.rpc_tracker``) and, on each device,
a server registered under a key (``python -m tvm.exec.rpc_server --tracker HOST:PORT
--key KEY``). Here a session is requested from the tracker for each candidate or
model to time (``RPCRunner``, ``bench``): the tracker hands out a free device of the
key, so N devices serve N sessions at once.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from .errors import TunerError, error_line


class RemoteError(TunerError):
    """The tracker cannot be reached, or no device is registered under the key."""


class DevicesLostError(RemoteError):
    """No device of the key answered within the wait; ``results`` holds what was measured before."""

    def __init__(self, message: str, results=None):
        super().__init__(message)
        self.results = results


@dataclass(frozen=True)
class RemoteSettings:
    """Where the devices are: the tracker's ``host``:``port`` and the devices' ``key``."""

    host: str
    port: int
    key: str
    session_timeout_s: float = 120.0  # the device ends a session that runs longer (a hung candidate)
    wait_s: float = 60.0  # how long to wait for a free device before taking the key's devices for gone
    tries: int = 2  # a candidate whose session dies on this many devices is stored as a crash
    priority: int = 1

    def __post_init__(self):
        if not self.key:
            raise RemoteError("a device key is needed (--device-key KEY, as the devices' servers were started with)")
        if min(self.session_timeout_s, self.wait_s) <= 0 or self.tries < 1:
            raise RemoteError(f"session timeout and wait must be positive and tries at least 1, got "
                              f"{self.session_timeout_s}, {self.wait_s} and {self.tries}")

    @classmethod
    def parse(cls, address: str, key: str | None, **options) -> "RemoteSettings":
        """From ``HOST:PORT`` (``--rpc``) and the device key (``--device-key``)."""
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit():
            raise RemoteError(f"--rpc {address!r} is not HOST:PORT (the tracker's address, e.g. 127.0.0.1:9190)")
        return cls(host, int(port), key or "", **options)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def connect_tracker(remote: RemoteSettings, timeout_s: float = 10.0):
    """A connection to the tracker, whose calls give up after ``timeout_s``; one line if unreachable."""
    from tvm import rpc

    try:
        socket.create_connection((remote.host, remote.port), timeout=timeout_s).close()
        tracker = rpc.connect_tracker(remote.host, remote.port)
    except (OSError, RuntimeError) as err:
        raise RemoteError(f"cannot reach the RPC tracker at {remote.address}: {error_line(err)} (is "
                          f"'python -m tvm.exec.rpc_tracker --port {remote.port}' running there?)") from None
    tracker._sock.settimeout(timeout_s)  # TVM's client waits forever otherwise
    return tracker


def device_count(remote: RemoteSettings) -> int:
    """How many servers are registered under the key; an error naming the known keys if none is."""
    tracker = connect_tracker(remote)
    try:
        servers = tracker.summary()["server_info"]
    except (OSError, RuntimeError) as err:
        raise RemoteError(f"the RPC tracker at {remote.address} did not answer: {error_line(err)}") from None
    finally:
        tracker.close()
    keys = [str(server["key"]).split(":", 1)[-1] for server in servers]
    count = keys.count(remote.key)
    if count == 0:
        known = ", ".join(sorted(set(keys))) or "none"
        raise RemoteError(f"no device is registered under key {remote.key!r} at the tracker {remote.address} "
                          f"(keys there: {known})")
    return count


def request_session(remote: RemoteSettings):
    """A session on a free device of the key, or ``DevicesLostError`` after ``wait_s`` without one. A device
    handed out that dies before its session starts is asked past: the tracker hands out another."""
    deadline = time.monotonic() + remote.wait_s
    while True:
        tracker = connect_tracker(remote, timeout_s=max(deadline - time.monotonic(), 0.1))
        try:
            return tracker.request(remote.key, priority=remote.priority, session_timeout=remote.session_timeout_s,
                                   max_retry=1)
        except (OSError, RuntimeError) as err:
            if time.monotonic() >= deadline:
                raise DevicesLostError(f"no device of key {remote.key!r} became free at {remote.address} within "
                                       f"{remote.wait_s:.0f} s ({error_line(err)})") from None
        finally:
            tracker.close()
        time.sleep(0.1)  # the tracker drops a dead device when its connection closes


def describe_device(session) -> dict:
    """What the device reports of itself, where its TVM has the functions for it: the LLVM triple and
    CPU (a device with TVM's compiler) and its runtime's thread count."""
    queries = {"mtriple": "target.llvm_get_system_triple", "mcpu": "target.llvm_get_system_cpu",
               "threads": "runtime.NumThreads"}
    info = {}
    for name, function in queries.items():
        try:
            info[name] = session.get_function(function)()
        except (AttributeError, RuntimeError, ValueError):  # a runtime-only device lacks the compiler's
            continue
    if "threads" in info:
        info["threads"] = int(info["threads"])
    return {name: value if name == "threads" else str(value) for name, value in info.items()}


def remote_backend(spec, remote: RemoteSettings, timing: str):
    """The backend of the key's devices: the target given (``'host'``: the device's own triple, CPU and
    thread count, as it reports them), filed under the device key and the CPU it reports."""
    from .backend import parse_target, resolve_backend, triple_arch

    device_count(remote)  # the tracker is up and knows the key
    session = request_session(remote)
    try:
        info = describe_device(session)
    finally:
        del session
    target = {"kind": "llvm"} if spec in (None, "host") else parse_target(spec)
    if spec in (None, "host"):
        target.update({name: info[name] for name in ("mtriple", "mcpu") if name in info})
    reported = info.get("mtriple")
    if reported and target.get("mtriple") and triple_arch(target["mtriple"]) != triple_arch(reported):
        raise RemoteError(f"the target is for {target['mtriple']} but the devices of key {remote.key!r} report "
                          f"{info['mtriple']}: give the devices' own target (or --target host to take theirs)")
    if "num-cores" not in target and "threads" in info:
        target["num-cores"] = info["threads"]
    device = info.get("mcpu", "unknown")
    if "mtriple" in info:
        device = f"{device} ({info['mtriple']})"
    return resolve_backend(target, device=device, timing=timing, device_key=remote.key)


def stored_backends(cache, spec, key: str, timing: str) -> list:
    """The backends of device key ``key`` that ``cache`` holds records of: those with the target
    ``spec`` (``'host'``: any), with this version of TVM and of the search spaces."""
    import tvm

    import search_spaces

    from .backend import Backend, parse_target, resolve_backend

    wanted = None
    if spec not in (None, "host"):
        wanted = resolve_backend(parse_target(spec), device_key=key, timing=timing).target
    found = []
    for backend_key, description in cache.backends().items():
        backend = Backend.from_json(description)
        if (backend.device_key == key and backend.timing == timing and backend.tvm_version == tvm.__version__
                and backend.space_version == search_spaces.SPACE_VERSION
                and (wanted is None or backend.target == wanted) and cache.count(backend_key=backend_key)):
            found.append(backend)
    return found


def stored_backend(cache, spec, key: str, timing: str):
    """The one backend of ``stored_backends`` (``tuner build --device-key`` without a device at hand)."""
    found = stored_backends(cache, spec, key, timing)
    if not found:
        raise RemoteError(f"{cache.path} holds no {timing}-timed records of device key {key!r}"
                          f"{' for this target' if spec not in (None, 'host') else ''}: tune with --rpc (or "
                          f"--export-candidates) first, or give --rpc to build for the device as it is now")
    if len(found) > 1:
        raise RemoteError(f"{cache.path} holds records of {len(found)} kinds of device under key {key!r} "
                          f"({'; '.join(str(b) for b in found)}): give --target, or --rpc to ask the device")
    return found[0]
