"""What a user asks of a tuned model, gathered in one value: how fast it is beside ONNX Runtime, which
of their layers is slow, whether it is still correct, and what tuning bought.

``gather`` builds the model from the cache, times it against ONNX Runtime (``tuner.bench``), times
each task in the model (``tuner.profile``) and each ONNX Runtime node (``tuner.ort_profile``), and
puts the two side by side per task through the ONNX nodes each task computes
(``tuner.provenance``). ``tuner.report_html`` draws it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .bench import bench, random_inputs
from .build import build
from .profile import RUNTIME, profile

OUTSIDE = "outside any task (reshapes, runtime)"
SESSION_GAP_S = 300.0  # a longer pause between two records is another tuning session, not tuning time
TOP1_INPUTS = 5


@dataclass(frozen=True)
class TaskRow:
    """One task beside the ONNX Runtime nodes of the same ONNX nodes."""

    task: str
    nodes: tuple  # tuner.provenance.Node
    calls: int
    ms: float | None  # ours, per run; None: a row of ONNX Runtime's only
    onnxruntime_ms: float | None
    gflops: float | None
    peak_share: float | None  # of the machine's measured peak
    source: str  # "cache" (tuned), "default", "runtime"

    @property
    def ratio(self) -> float | None:
        """Our time over ONNX Runtime's: above 1, ONNX Runtime is faster on these nodes."""
        return self.ms / self.onnxruntime_ms if self.ms and self.onnxruntime_ms else None

    @property
    def to_win_ms(self) -> float:
        return (self.ms or 0.0) - (self.onnxruntime_ms or 0.0)

    def to_json(self) -> dict:
        return {"task": self.task, "nodes": [node.to_json() for node in self.nodes], "calls": self.calls,
                "ms": self.ms, "onnxruntime_ms": self.onnxruntime_ms, "ratio": self.ratio, "gflops": self.gflops,
                "peak_share": self.peak_share, "source": self.source}


@dataclass(frozen=True)
class CurvePoint:
    trials: int
    seconds: float  # tuning time (pauses between sessions left out)
    estimate_ms: float  # the sum over tasks of calls x best time so far

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Report:
    model: str
    backend: str
    backend_description: str
    num_threads: int
    tuner_ms: float
    onnxruntime_ms: float
    max_abs_err: float
    max_rel_err: float
    top1_agree: int  # random inputs on which the top-1 class agrees with ONNX Runtime's
    top1_inputs: int
    tasks: int
    tasks_tuned: int
    flops_share_tuned: float
    peak_gflops: float | None
    rows: tuple[TaskRow, ...]
    curve: tuple[CurvePoint, ...]
    onnxruntime_profiled_ms: float  # a whole run of ONNX Runtime while its profiler ran
    created_at: float = field(default_factory=time.time)
    conv_layout: str = "nchw"  # the convolutions' layout; with ``auto``, each stage's and why

    @property
    def speedup(self) -> float:
        return self.onnxruntime_ms / self.tuner_ms

    def to_json(self) -> dict:
        data = {key: value for key, value in self.__dict__.items() if key not in ("rows", "curve")}
        data["speedup_vs_onnxruntime"] = self.speedup
        data["rows"] = [row.to_json() for row in self.rows]
        data["curve"] = [point.to_json() for point in self.curve]
        return data


def gather(model, backend, cache, repeat: int = 7, runs: int = 20) -> Report:
    """Everything the report shows, measured in this run on this machine."""
    from .layout_plan import layout_name
    from .ort_profile import node_times
    from .peak import peak_gflops

    built = build(model, backend, cache)
    arrays = random_inputs(model.inputs)
    timed = bench(model, backend, built=built, repeat=repeat)
    ours = profile(built, arrays, runs)
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    theirs = node_times(model, feeds, backend.num_cores, runs)
    peak = peak_gflops(backend, cache)
    agree = top1_agreement(model, built, backend.num_cores)
    return Report(
        model=model.name, backend=backend.key, backend_description=str(backend), num_threads=backend.num_cores,
        tuner_ms=timed.tuner_ms, onnxruntime_ms=timed.onnxruntime_ms, max_abs_err=timed.max_abs_err,
        max_rel_err=timed.max_rel_err, top1_agree=agree, top1_inputs=TOP1_INPUTS, tasks=timed.tasks,
        tasks_tuned=timed.tasks_tuned, flops_share_tuned=timed.flops_share_tuned, peak_gflops=peak,
        rows=tuple(side_by_side(built.schedules, ours, theirs, peak)),
        curve=tuple(tuning_curve(cache, backend.key, built.schedules)),
        onnxruntime_profiled_ms=theirs.run_ms,
        conv_layout=built.layout_plan.stages_text() if built.layout_plan else layout_name(backend.conv_block))


def side_by_side(schedules, task_times, node_times, peak: float | None) -> list[TaskRow]:
    """A row per task (and one for our runtime, one for ONNX Runtime's nodes outside every task),
    sorted by the time that could be won on it: ours minus ONNX Runtime's."""
    owner = {node.index: schedule.task_name for schedule in schedules for node in schedule.nodes}
    theirs: dict[str, float] = {}
    for index, ms in node_times.by_node.items():
        name = owner.get(index, OUTSIDE)
        theirs[name] = theirs.get(name, 0.0) + ms
    if node_times.unmapped_ms:
        theirs[OUTSIDE] = theirs.get(OUTSIDE, 0.0) + node_times.unmapped_ms
    by_name = {schedule.task_name: schedule for schedule in schedules}
    rows = []
    for row in task_times:
        schedule = by_name.get(row.task_name)
        name = OUTSIDE if row.task_name == RUNTIME else row.task_name
        share = row.gflops / peak if row.gflops and peak else None
        rows.append(TaskRow(name, schedule.nodes if schedule else (), row.calls_per_run, row.ms_per_run,
                            theirs.pop(name, None), row.gflops, share, row.source))
    for name, ms in theirs.items():  # tasks that never ran (none), and ONNX Runtime's own leftovers
        rows.append(TaskRow(name, by_name[name].nodes if name in by_name else (), 0, None, ms, None, None,
                            by_name[name].source if name in by_name else "runtime"))
    return sorted(rows, key=lambda row: -row.to_win_ms)


def tuning_curve(cache, backend_key: str, schedules) -> list[CurvePoint]:
    """The tuner's estimate of the model's latency after each record of its tasks, oldest first. A
    task with no record yet counts at its first record's time."""
    weights = {schedule.workload_key: schedule.weight for schedule in schedules}
    records = [record for key in weights for record in cache.records(backend_key, key)]
    records.sort(key=lambda record: record.created_at)
    first = {}
    for record in records:
        if record.result.mean_s is not None:
            first.setdefault(record.workload_key, record.result.mean_s)
    best = dict(first)
    points, seconds, last = [], 0.0, None
    for trials, record in enumerate(records, start=1):
        if last is not None:
            seconds += min(record.created_at - last, SESSION_GAP_S)
        last = record.created_at
        if record.result.mean_s is not None:
            best[record.workload_key] = min(best[record.workload_key], record.result.mean_s)
        estimate = sum(weights[key] * cost for key, cost in best.items()) * 1e3
        points.append(CurvePoint(trials, seconds, estimate))
    return points


def top1_agreement(model, built, num_threads: int) -> int:
    """On how many of ``TOP1_INPUTS`` random inputs the largest entry of the first output's last axis
    (the top-1 class) is where ONNX Runtime has it, at every position."""
    from .bench import onnxruntime_session

    session = onnxruntime_session(model, num_threads)
    compiled = built.runner()
    agree = 0
    for seed in range(1, TOP1_INPUTS + 1):
        arrays = random_inputs(model.inputs, seed)
        ours = compiled.run(*arrays)[0]
        theirs = session.run(None, {spec.name: a for spec, a in zip(model.inputs, arrays)})[0]
        agree += bool(np.array_equal(np.argmax(ours, axis=-1), np.argmax(theirs, axis=-1)))
    return agree
