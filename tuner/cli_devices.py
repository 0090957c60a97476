"""The command line's device options: which backend a command works for (this machine, a target
given, or remote devices behind an RPC tracker) and the runner that times on remote devices."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

from .errors import TunerError


def add_device_args(parser) -> None:
    group = parser.add_argument_group("remote devices (README: Remote devices)")
    group.add_argument("--rpc", metavar="HOST:PORT", help="the RPC tracker that hands out the devices to time on")
    group.add_argument("--device-key", metavar="KEY", help="the key the devices' RPC servers registered under; "
                       "without --rpc, 'build' applies the records tuned on such a device")
    group.add_argument("--cc", metavar="PATH", help="the compiler that links libraries for the target (default: "
                       "from the target's mtriple, e.g. aarch64-linux-gnu-gcc)")


def command_backend(args, cache=None, measure: bool = False):
    """The backend the command works for: this machine, a target given, or the devices of ``--rpc``/
    ``--device-key``, with the convolution layout of ``--conv-layout``. ``measure``: the command times
    code, so a foreign target needs a device."""
    return with_conv_layout(_command_backend(args, cache, measure), args)


def with_conv_layout(backend, args):
    from .layout import LAYOUTS

    block = LAYOUTS[getattr(args, "conv_layout", None) or "nchw"]
    return dataclasses.replace(backend, conv_block=block) if block != backend.conv_block else backend


def _command_backend(args, cache, measure: bool):
    from .backend import resolve_backend
    from .remote import RemoteSettings, remote_backend, stored_backend

    rpc, key = getattr(args, "rpc", None), getattr(args, "device_key", None)
    if rpc:
        if not key:
            raise TunerError("--rpc needs --device-key KEY, the key the devices' servers registered under")
        return remote_backend(args.target, RemoteSettings.parse(rpc, key), args.timing)
    if key:
        if measure or cache is None:
            raise TunerError("--device-key needs --rpc HOST:PORT, the tracker to reach the devices through")
        return stored_backend(cache, args.target, key, args.timing)
    backend = resolve_backend(args.target, timing=args.timing)
    if measure and backend.is_cuda:
        from .cuda import require_gpu

        require_gpu(f"'tuner {args.command}'")
    if measure and backend.foreign:
        raise TunerError(f"target {backend.target.get('mtriple')} is another machine's: its code is timed on the "
                         f"device; pass --rpc HOST:PORT --device-key KEY (README: Remote devices)")
    return backend


def remote_settings(args):
    from .remote import RemoteSettings

    return RemoteSettings.parse(args.rpc, args.device_key) if getattr(args, "rpc", None) else None


@contextmanager
def remote_runner(args, measure_settings):
    """The backend to tune for and, for remote devices, the runner that times on them (else None:
    ``tune`` makes the local one)."""
    backend = command_backend(args, measure=True)
    if not args.rpc:
        yield backend, None
        return
    from .rpc_runner import RPCRunner

    runner = RPCRunner(backend, measure_settings, remote_settings(args))
    try:
        yield backend, runner
    finally:
        runner.close()


def export_candidates(args, model, settings, strategy, cost_model, measure_settings) -> None:
    """``tuner tune --export-candidates DIR``: one round of candidates for the offline device of
    ``--device-key``, chosen with what the cache holds of it."""
    from .cache import Cache
    from .offline import export_candidates as export

    if not args.device_key or args.rpc:
        raise TunerError("--export-candidates needs --device-key NAME (the name the device's records are filed "
                         "under) and no --rpc (a device reached through a tracker is timed directly)")
    with Cache(args.cache) as cache:
        backend = with_conv_layout(offline_backend(cache, args.target, args.device_key, args.timing), args)
        report = export(model, backend, cache, args.export_candidates, settings, measure_settings=measure_settings,
                        cost_model=cost_model, strategy=strategy)
    print(report.summary())


def offline_backend(cache, spec, key: str, timing: str):
    """The backend of the offline device ``key``: the one its imported records are filed under, or for
    a first round, the target given (its GPU or CPU is filled in when its results are imported)."""
    from .backend import resolve_backend
    from .remote import stored_backend, stored_backends

    found = stored_backends(cache, spec, key, timing)
    if len(found) == 1:
        return found[0]
    return stored_backend(cache, spec, key, timing) if found else resolve_backend(spec, timing=timing,
                                                                                   device_key=key)
