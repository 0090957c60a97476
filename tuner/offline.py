"""Tuning for a device this machine cannot reach: export built candidates, import their timings.

A device with no network and no compiler (an air-gapped board or GPU server) gets a folder:
``export_candidates`` builds a batch of candidates per task here, chosen by the search (the
cost model trained on what the cache holds of the device), with the task's expected outputs and
a measuring script that needs TVM's runtime alone (``offline_measure.py``). On the device,
``python FOLDER/measure.py`` times them and writes ``results.json``; ``import_results`` stores
them under the device's backend key, filled in with what the device reported of itself. Each
export after an import is another round of model-guided search.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import CacheError, SettingsError
from .measure import MeasureSettings
from .messages import Artifact
from .records import MeasureResult, Record

MANIFEST = "manifest.json"
RESULTS = "results.json"
MANIFEST_FORMAT = "tuner-candidates"
SCRIPTS = {"offline_measure.py": "measure.py", "device_timing.py": "device_timing.py"}
REFERENCE_TARGET = {"kind": "llvm"}  # the expected outputs come from this machine's CPU


@dataclass(frozen=True)
class ExportReport:
    folder: str
    backend: str
    tasks: int
    candidates: int  # built, to be timed on the device
    failed: int  # configs that did not build (stored as such on import)

    def summary(self) -> str:
        failed = f" ({self.failed} more failed to build)" if self.failed else ""
        return (f"wrote {self.candidates} candidates of {self.tasks} tasks to {self.folder}{failed}; on the device: "
                f"python {self.folder}/measure.py, then here: tuner cache import {self.folder}")


def export_candidates(model, backend, cache, folder, settings=None, *, measure_settings=MeasureSettings(),
                      cost_model=None, strategy=None) -> ExportReport:
    """Build a batch of new candidates for every task of ``model`` into ``folder``: ``settings`` (a
    ``TuneSettings``) gives the search, its batch size (the candidates per task) and seed;
    ``strategy`` and ``cost_model`` replace the ones it names."""
    from .builder import LocalBuilder
    from .runner import References, timing_options
    from .tune import TuneSettings, _context, _fresh, model_states, narrow_when_measured

    settings = settings or TuneSettings()
    out = Path(folder)
    if (out / MANIFEST).exists():
        raise SettingsError(f"{out} already holds exported candidates: give a new folder for this round")
    states, layouts = model_states(model, backend, cache, settings.top_k)
    narrow_when_measured(states, model, backend, cache, layouts, settings.top_k)  # ``auto``: the plan's tasks
    strategy = strategy or settings.create_strategy()
    seed = settings.seed + sum(state.trials for state in states)
    strategy.start(states, _context(strategy, states, backend, cache, cost_model, seed))
    count = settings.batch_size or strategy.batch_size
    (out / "candidates").mkdir(parents=True, exist_ok=True)
    build_settings = replace(measure_settings, build_workers=measure_settings.build_workers or os.cpu_count())
    tasks = []
    with LocalBuilder(backend, build_settings) as builder:
        references = References(REFERENCE_TARGET, measure_settings.reference_timeout_s)
        try:
            for index, state in enumerate(states):
                configs = _fresh(strategy.propose(state, count), state, count)
                built = builder.build(state.task, configs) if configs else []
                tasks.append(_export_task(out, index, state.task, configs, built, references.prepare(state.task)))
        finally:
            references.close()
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "export_id": uuid.uuid4().hex, "model": model.name,
                "backend": backend.describe(), "timing": timing_options(backend, measure_settings).to_json(), "tasks": tasks}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    for source, name in SCRIPTS.items():
        shutil.copyfile(Path(__file__).with_name(source), out / name)
    candidates = [c for task in tasks for c in task["candidates"]]
    built = sum("file" in c for c in candidates)
    return ExportReport(str(out), backend.key, len(tasks), built, len(candidates) - built)


def _export_task(out: Path, index: int, task, configs, built, io) -> dict:
    """A task's entry of the manifest; its candidates' libraries and expected outputs into ``out``."""
    import numpy as np
    import tvm

    args = [{"shape": [int(d) for d in param.ty.shape], "dtype": str(param.ty.dtype)} for param in task.func.params]
    entry = {"index": index, "workload_key": task.workload_key, "name": task.name, "flops": task.flops,
             "tir": tvm.ir.save_json(task.func), "args": args, "num_outputs": task.num_outputs, "seed": 0,
             "expected": {}, "input_sums": {}, "candidates": []}
    if io.reference_ok:
        (out / "tasks").mkdir(exist_ok=True)
        for position in range(len(args) - task.num_outputs, len(args)):
            name = f"tasks/t{index:03d}_out{position}.npy"
            shutil.copyfile(os.path.join(io.io_dir, f"expected{position}.npy"), out / name)
            entry["expected"][str(position)] = name
        for position in range(len(args) - task.num_outputs):
            array = np.load(os.path.join(io.io_dir, f"arg{position}.npy"))
            entry["input_sums"][str(position)] = float(array.sum(dtype=np.float64))
    for number, (config, result) in enumerate(zip(configs, built)):
        candidate = {"config": json.loads(config.to_json())}
        if isinstance(result, Artifact):
            candidate["file"] = f"candidates/t{index:03d}_c{number:02d}.so"
            shutil.move(result.path, out / candidate["file"])
            if result.prepack:
                candidate["prepack"] = {"indices": list(result.prepack.indices),
                                        "packed": [[list(shape), dtype] for shape, dtype in result.prepack.packed]}
        else:
            candidate["result"] = result.to_json()
        entry["candidates"].append(candidate)
    return entry


@dataclass(frozen=True)
class ImportReport:
    backend: str
    stored: int
    already: int  # records the cache held before
    unmeasured: int  # candidates the device has not timed (yet)

    def summary(self) -> str:
        return (f"stored {self.stored} records under {self.backend} ({self.already} already there, "
                f"{self.unmeasured} candidates not timed on the device)")


def is_export(path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).exists()


def import_results(cache, folder) -> ImportReport:
    """Store the timings of ``folder`` (an export with the device's ``results.json``) in ``cache``."""
    import tvm

    out = Path(folder)
    manifest = _read_json(out / MANIFEST, "the export's manifest")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CacheError(f"{out / MANIFEST} is not a manifest of exported candidates")
    if not (out / RESULTS).exists():
        raise CacheError(f"{out} holds no {RESULTS} yet: run 'python {out}/measure.py' on the device first")
    results = _read_json(out / RESULTS, "the device's results")
    if results.get("export_id") != manifest.get("export_id"):
        raise CacheError(f"{out / RESULTS} is from another export than {out / MANIFEST}")
    backend = device_backend(manifest["backend"], results["device"])
    cache.add_backend(backend)
    records, unmeasured = [], 0
    for task in manifest["tasks"]:
        cache.add_workload(_Workload(task["workload_key"], task["name"], task["flops"]), task["tir"])
        for number, candidate in enumerate(task["candidates"]):
            data = candidate.get("result") or results["results"].get(f"{task['index']}/{number}")
            if data is None:
                unmeasured += 1
                continue
            config = json.dumps(candidate["config"])
            versions = {"tvm": tvm.__version__, "rule": candidate["config"].get("rule"), "offline": True}
            records.append(Record(backend.key, task["workload_key"], task["name"], config,
                                  MeasureResult.from_json(data), versions))
    stored = cache.add_many(records)
    return ImportReport(backend.key, stored, len(records) - stored, unmeasured)


@dataclass(frozen=True)
class _Workload:
    workload_key: str
    name: str
    flops: float


def device_backend(described: dict, device: dict):
    """The backend of the export ``described``, with the device, as it reported itself, in place of
    what the tuning machine could know of it."""
    from .backend import Backend

    backend = Backend.from_json(json.dumps(described))
    if not backend.is_cuda:
        return replace(backend, device=device.get("model", backend.device))
    gpu = dict(backend.gpu or {})
    wanted = gpu.get("compute_capability", "")
    if device.get("compute_capability") != wanted.rstrip("abcdefghijklmnopqrstuvwxyz"):
        raise CacheError(f"the results are from a GPU of compute capability {device.get('compute_capability')}, "
                         f"the candidates were built for {wanted}")
    gpu.update({name: device[name] for name in ("model", "driver_version") if device.get(name)})
    return replace(backend, device=gpu["model"], gpu=gpu)


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CacheError(f"cannot read {what} {path}: {err}") from None
