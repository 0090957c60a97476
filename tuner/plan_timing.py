"""The convolution layout plan chosen by timing whole builds (the end of ``tune`` with ``auto``).

The plan that the records give (``tuner.layout_plan.choose_plan``) sums kernels timed alone; among
their neighbours they run differently (on a Zen 3, ResNet-50's NCHW kernels ran 40-60 % above their
records, the blocked ones 5-20 %: docs/benchmarks.md), so records alone can pick the slower model.
Here each candidate plan (the records' plan and each layout throughout) is built from the cache and
the builds are timed in turns on this machine; the fastest by median is stored in the cache for this
model, and ``tuner.build`` follows it from then on.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from .layout_plan import choose_plan, records_best, store_plan, variants


def candidate_plans(parts: dict, best_s) -> list:
    """The records' plan first, then each layout throughout; one plan per distinct set of blocks."""
    plan = choose_plan(parts, best_s)
    plans = [plan] + [plan.with_blocks(block) for block in parts]
    unique = {}
    for candidate in plans:
        unique.setdefault(repr(candidate.blocks()), candidate)
    return list(unique.values())


def choose_by_timing(model, backend, cache, rounds: int = 5, min_repeat_s: float = 0.1, settle_s: float = 0.5,
                     timers=None):
    """Build each candidate plan of ``model`` from ``cache``, time the builds in turns for ``rounds``
    rounds, store the fastest (by median) in ``cache`` and return it, its ``timed_ms`` set. ``timers``
    ({plan text: () -> seconds}) replaces the builds' timers (tests)."""
    from .bench import interleaved_s, model_batch_timer, random_inputs
    from .build import build

    parts = variants(model, backend)
    plans = {plan.layouts_text(): plan for plan in candidate_plans(parts, records_best(backend, cache))}
    if timers is None:
        arrays = random_inputs(model.inputs, 0)
        timers = {text: model_batch_timer(build(model, backend, cache, plan=plan).runner(), arrays, min_repeat_s)
                  for text, plan in plans.items()} if len(plans) > 1 else {}
    timings = interleaved_s(timers, rounds, settle_s) if timers else {}
    medians = {text: statistics.median(seconds) * 1e3 for text, seconds in timings.items()}
    chosen = min(plans, key=lambda text: medians.get(text, 0.0))
    plan = replace(plans[chosen], timed_ms=tuple(medians.items()))
    store_plan(parts, backend, cache, plan)
    return plan
