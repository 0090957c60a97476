"""This machine's measured peak of float32 arithmetic, the yardstick of "% of peak" in reports.

A large float32 matrix product in numpy's OpenBLAS (hand-written FMA kernels, blocked
for the caches) on the backend's cores: it is FMA-bound and reaches close to what the
cores can do, which a loop of FMAs written through TVM would not show more truly (its
accumulators go through memory). Measured once per backend and kept in the cache.
"""

from __future__ import annotations

import time

SIZE = 1024
RUNS = 7


def measure_gflops(num_threads: int) -> float:
    """The best of ``RUNS`` products of two ``SIZE``-square float32 matrices, in GFLOP/s."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((SIZE, SIZE), dtype=np.float32)
    b = rng.random((SIZE, SIZE), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(limits=num_threads):
        a @ b  # warm-up: the BLAS starts its threads
        for _ in range(RUNS):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    return 2.0 * SIZE ** 3 / best / 1e9


def peak_gflops(backend, cache=None) -> float | None:
    """The backend's peak from ``cache``, measured and stored there the first time; None for a
    backend that is not this machine (a remote device, another architecture)."""
    if backend.device_key is not None or backend.foreign:
        return None
    stored = cache.peak(backend.key) if cache is not None else None
    if stored is not None:
        return stored
    measured = measure_gflops(backend.num_cores)
    if cache is not None:
        cache.set_peak(backend.key, measured)
    return measured
