"""Cost-model features of candidates: apply configs, extract, and keep them in the cache.

Features are derived data: they are stored per (backend, task, config, feature
version) so that a later run, or another model sharing tasks, need not apply
and extract the same configs again.
"""

from __future__ import annotations


def _timed_modules(space, task_func, configs, target):
    """Modules of what is timed for each config (``lower``: its compute, weights prepacked);
    None where a config does not fit."""
    import tvm

    import search_spaces

    from .lower import lower

    mods = []
    for config in configs:
        try:
            mods.append(tvm.IRModule({"main": lower(task_func, config, target, space).split().compute}))
        except search_spaces.InvalidConfigError:
            mods.append(None)
    return mods


def extract_rows(space, task_func, configs, backend) -> list:
    """One feature row per config (None for a config that cannot be applied)."""
    import costmodel

    mods = _timed_modules(space, task_func, configs, backend.tvm_target())
    usable = [mod for mod in mods if mod is not None]
    if not usable:
        return [None] * len(configs)
    matrix = costmodel.extract(usable, backend.tvm_target(), task_func=task_func, num_threads=backend.num_cores)
    rows = iter(matrix)
    return [next(rows) if mod is not None else None for mod in mods]


def candidate_features(state, configs, backend, memo: dict) -> list:
    """Feature rows of ``configs`` of ``state``'s task, memoized by config JSON in ``memo``."""
    keys = [(state.task.workload_key, config.to_json()) for config in configs]
    missing = [config for config, key in zip(configs, keys) if key not in memo]
    if missing:
        for config, row in zip(missing, extract_rows(state.space, state.task.func, missing, backend)):
            memo[(state.task.workload_key, config.to_json())] = row
    return [memo[key] for key in keys]


def store_features(cache, backend, workload_key: str, configs, rows) -> None:
    import costmodel

    items = [(config.to_json(), row) for config, row in zip(configs, rows) if row is not None]
    cache.add_features(backend.key, workload_key, str(costmodel.FEATURE_VERSION), items)


def record_rows(cache, backend, limit: int, states: dict | None = None, records=None) -> list:
    """(workload key, features, throughput) for the newest ``limit`` usable records of ``backend``
    (``records``: the backend's records, when the caller has read them already).

    Errors other than invalid configs count as throughput 0, so the model learns to avoid them.
    Features come from the cache when stored, and are extracted (and stored) otherwise.
    """
    import costmodel

    version = str(costmodel.FEATURE_VERSION)
    by_task: dict[str, list] = {}
    for record in cache.records(backend.key) if records is None else records:
        if record.result.error_kind != "invalid_config":
            by_task.setdefault(record.workload_key, []).append(record)
    kept = _newest(by_task, limit)
    rows = []
    for workload_key, records in kept.items():
        workload = cache.workload(workload_key)
        if workload is None or not workload.get("tir_json"):
            continue
        features = features_for_records(cache, backend, workload, records, version, (states or {}).get(workload_key))
        for record in records:
            row = features.get(record.config)
            if row is not None:
                throughput = workload["flops"] / record.result.mean_s if record.result.ok else 0.0
                rows.append((workload_key, row, throughput))
    return rows


def _newest(by_task: dict, limit: int) -> dict:
    everything = sorted((r for records in by_task.values() for r in records), key=lambda r: -r.created_at)
    kept: dict[str, list] = {}
    for record in everything[:limit]:
        kept.setdefault(record.workload_key, []).append(record)
    return kept


def features_for_records(cache, backend, workload: dict, records, version: str, state=None) -> dict:
    """{config JSON: row} for ``records`` of one task (``workload`` as ``Cache.workload`` gives it),
    extracting and storing what the cache does not hold yet."""
    import tvm

    import search_spaces

    stored = cache.features(backend.key, workload["workload_key"], version)
    missing = [r for r in records if r.config not in stored]
    if missing:
        func = state.task.func if state is not None else tvm.ir.load_json(workload["tir_json"])
        space = state.space if state is not None else search_spaces.space_for(func, backend.tvm_target())
        configs = []
        for record in missing:
            try:
                configs.append(search_spaces.Config.from_json(record.config))
            except search_spaces.InvalidConfigError:
                continue
        rows = extract_rows(space, func, configs, backend)
        cache.add_features(backend.key, workload["workload_key"], version,
                           [(c.to_json(), row) for c, row in zip(configs, rows) if row is not None])
        stored.update({c.to_json(): row for c, row in zip(configs, rows) if row is not None})
    return stored
