"""Integer helpers for tile sizes: divisors, perfect tilings, vector widths and
neighbour moves."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LANES = 16  # fp32 lanes of one 512-bit register
MAX_LANES = 64  # widest vector (and largest innermost tile) the spaces offer


@dataclass(frozen=True)
class VectorUnit:
    """The CPU's vector registers, as the heuristic defaults size register blocks by them."""

    lanes: int = LANES  # fp32 lanes of one register
    registers: int = 32

    @property
    def accumulators(self) -> int:
        """Registers a register block may hold: 16 of AVX-512's 32; of AVX2's 16, 12 (the rest hold the
        broadcast and the loaded vectors; 16 accumulators of 8 lanes spill)."""
        return min(16, self.registers - 4)


AVX512 = VectorUnit(16, 32)


@lru_cache(maxsize=None)
def divisors(n: int) -> tuple[int, ...]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return tuple(sorted(set(small + [n // d for d in small])))


@lru_cache(maxsize=None)
def perfect_tilings(extent: int, levels: int, max_innermost: int = 0) -> tuple[tuple[int, ...], ...]:
    """All ordered ``levels``-tuples of positive ints whose product is ``extent``
    (outermost first), with the innermost factor at most ``max_innermost`` (0: no limit)."""
    if levels == 1:
        ok = max_innermost <= 0 or extent <= max_innermost
        return ((extent,),) if ok else ()
    out = []
    for d in divisors(extent):
        for rest in perfect_tilings(extent // d, levels - 1, max_innermost):
            out.append((d,) + rest)
    return tuple(out)


def largest_divisor(n: int, limit: int, multiple_of: int = 1) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` and a multiple of
    ``multiple_of``; 1 if there is none."""
    best = 1
    for d in divisors(n):
        if d <= limit and d % multiple_of == 0:
            best = d
    return best


def smallest_divisor_at_least(n: int, low: int) -> int:
    """The smallest divisor of ``n`` that is at least ``low`` (``n`` if none)."""
    for d in divisors(n):
        if d >= low:
            return d
    return n


def prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def move_factor(tile: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
    """A neighbouring tiling: one prime factor moved from one level to another."""
    sources = [i for i, t in enumerate(tile) if t > 1]
    if not sources or len(tile) < 2:
        return tile
    src = sources[int(rng.integers(len(sources)))]
    dst = int(rng.integers(len(tile) - 1))
    dst = dst + 1 if dst >= src else dst
    factors = prime_factors(tile[src])
    p = factors[int(rng.integers(len(factors)))]
    out = list(tile)
    out[src] //= p
    out[dst] *= p
    return tuple(out)


def vector_lanes(extent: int) -> int:
    """The default vector width for a loop of ``extent``: the largest power of two
    dividing it, up to 64, when that is at least 8; else the largest divisor up to
    16 (one register): LLVM handles widths that spread unevenly over several
    registers (48, 56 lanes) badly."""
    power = 1
    while extent % (power * 2) == 0 and power * 2 <= MAX_LANES:
        power *= 2
    return power if power >= 8 else max(power, largest_divisor(extent, LANES))
