"""What timing candidates on a device through the RPC tracker costs over timing them here.

Tunes the same small model for the same trials (random search, one seed: the same
configs) with the local runner and through one RPC server on 127.0.0.1, in
alternation, each run into a fresh in-memory cache, and prints the wall-clock times
and the overhead per candidate (a session, an upload and the inputs sent over the
socket for each).

    python -m benchmarks.remote_overhead [--trials 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks import models as bm
from benchmarks.local_devices import devices


def _tune_s(model, backend, runner, trials: int) -> float:
    from tuner.cache import Cache
    from tuner.tune import TuneSettings, tune

    with Cache(":memory:") as cache:
        started = time.perf_counter()
        report = tune(model, backend, cache, TuneSettings(trials=trials, search="random", batch_size=16),
                      runner=runner, progress=False)
        elapsed = time.perf_counter() - started
    assert report.measured == trials
    return elapsed


def main(argv=None) -> None:
    import tuner
    from tuner.backend import resolve_backend
    from tuner.remote import remote_backend
    from tuner.rpc_runner import RPCRunner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    model = tuner.load(bm.conv_model(in_channels=32, out_channels=32, size=28))
    local_backend = resolve_backend("host")
    times = {"local": [], "rpc": []}
    with devices(1, threads=local_backend.num_cores) as farm:
        remote = farm.remote()
        device_backend = remote_backend("host", remote, local_backend.timing)
        for _ in range(args.rounds):
            times["local"].append(_tune_s(model, local_backend, None, args.trials))
            with RPCRunner(device_backend, remote=remote) as runner:
                times["rpc"].append(_tune_s(model, device_backend, runner, args.trials))
    local, rpc = statistics.median(times["local"]), statistics.median(times["rpc"])
    print(f"{args.trials} trials, medians of {args.rounds} rounds in alternation: local runner {local:.1f} s, "
          f"one RPC server on 127.0.0.1 {rpc:.1f} s")
    print(f"overhead per candidate: {(rpc - local) / args.trials * 1e3:.0f} ms; per round: "
          + ", ".join(f"{l:.1f}/{r:.1f}" for l, r in zip(times["local"], times["rpc"])))


if __name__ == "__main__":
    main()
