"""Compare a built model with ONNX Runtime, in the same run, on the same inputs and thread count.

The two are timed in alternation (``interleaved_s``): each round times one batch of
each, so that the machine's speed drifting during the comparison (other work on a
shared host) affects both alike; the medians over the rounds are compared. Each
batch starts after a pause (``settle_s``): both runtimes keep their worker threads
spinning for a while after a call, and a batch started at once shares the cores with
the other one's spinning threads (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from .build import build


@dataclass(frozen=True)
class BenchReport:
    model: str
    backend: str
    tuner_ms: float
    onnxruntime_ms: float | None  # None: the model ran on a remote device, ONNX Runtime only here
    max_abs_err: float
    max_rel_err: float  # the largest difference over the largest magnitude of ONNX Runtime's output
    tasks: int
    tasks_tuned: int
    flops_share_tuned: float
    num_threads: int
    tuner_repeats_ms: tuple[float, ...] = field(default=())
    onnxruntime_repeats_ms: tuple[float, ...] = field(default=())
    profile: tuple = field(default=())  # TaskTime rows (tuner.profile), when asked for
    device_key: str | None = None  # the remote device it was timed on; None: this machine

    @property
    def speedup_vs_onnxruntime(self) -> float | None:
        return self.onnxruntime_ms / self.tuner_ms if self.onnxruntime_ms else None

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["speedup_vs_onnxruntime"] = self.speedup_vs_onnxruntime
        data["tuner_repeats_ms"] = list(self.tuner_repeats_ms)
        data["onnxruntime_repeats_ms"] = list(self.onnxruntime_repeats_ms)
        data["profile"] = [row.to_json() for row in self.profile]
        return data

    def table(self) -> str:
        from .profile import table

        where = f" (device {self.device_key!r})" if self.device_key else ""
        lines = [f"model {self.model} on {self.backend}{where}, {self.num_threads} threads",
                 f"  tuner (TVM)   {self.tuner_ms:10.3f} ms  (median of {len(self.tuner_repeats_ms)} repeats)"]
        difference = (f"max |difference|: {self.max_abs_err:.3g} ({self.max_rel_err:.2g} of the output's largest "
                      f"magnitude)")
        if self.onnxruntime_ms is None:
            lines.append(f"  outputs against ONNX Runtime run here on the same inputs: {difference}")
        else:
            lines += [f"  onnxruntime   {self.onnxruntime_ms:10.3f} ms  (median of "
                      f"{len(self.onnxruntime_repeats_ms)} repeats)",
                      f"  speedup vs onnxruntime: {self.speedup_vs_onnxruntime:.2f}x   {difference}"]
        lines.append(f"  {self.tasks_tuned}/{self.tasks} tasks tuned ({self.flops_share_tuned:.0%} of FLOPs)")
        if self.profile:
            how = ("each task's kernel timed alone on the device, times its calls per run" if self.device_key
                   else "one run, each kernel call timed")
            lines += [f"where the time goes ({how}):", table(list(self.profile))]
        return "\n".join(lines)


def random_inputs(inputs, seed: int = 0) -> list[np.ndarray]:
    """Standard-normal floats, small non-negative integers, random booleans: one array per input. An
    integer input named like a mask (a transformer's ``attention_mask``) gets ones, with a few zeros."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in inputs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(spec.shape).astype(dtype))
        elif dtype.kind in "iu" and "mask" in spec.name.lower():
            arrays.append((rng.random(spec.shape) < 0.9).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, spec.shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, 8, spec.shape).astype(dtype))
    return arrays


def onnxruntime_session(model, num_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings (initializers listed as inputs) are not the user's
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def batch_timer(run, min_repeat_s: float):
    """A function that times one batch of calls of ``run`` (sized to last about ``min_repeat_s``,
    after one warm-up call) and returns the seconds per call."""
    start = time.perf_counter()
    run()
    number = max(1, math.ceil(min_repeat_s / max(time.perf_counter() - start, 1e-7)))

    def timed() -> float:
        start = time.perf_counter()
        for _ in range(number):
            run()
        return (time.perf_counter() - start) / number

    return timed


def model_batch_timer(compiled, arrays, min_repeat_s: float):
    """Like ``batch_timer`` for a compiled model, timed by TVM's own evaluator (no Python in the loop)."""
    start = time.perf_counter()
    compiled.run(*arrays)
    number = max(1, math.ceil(min_repeat_s / max(time.perf_counter() - start, 1e-7)))
    return lambda: compiled.time_s(*arrays, number=number, repeat=1)[0]


def interleaved_s(timers: dict, repeat: int, settle_s: float = 0.5) -> dict[str, list[float]]:
    """``repeat`` rounds, each timing one batch of every timer in turn, each batch after a pause of
    ``settle_s`` (so that the previous one's spinning threads have gone to sleep): {name: seconds per
    call of each round}."""
    results = {name: [] for name in timers}
    for _ in range(repeat):
        for name, timer in timers.items():
            time.sleep(settle_s)
            results[name].append(timer())
    return results


def against_onnxruntime(model, compiled: dict, arrays, rounds: int, num_threads: int,
                        min_repeat_s: float = 0.1) -> dict[str, list[float]]:
    """Each of ``compiled`` ({name: CompiledModel}) and ONNX Runtime on the same ``arrays``, timed in
    turns (``interleaved_s``): {name: seconds per run in each round}, ONNX Runtime's as "onnxruntime"."""
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    session = onnxruntime_session(model, num_threads)
    timers = {name: model_batch_timer(runner, arrays, min_repeat_s) for name, runner in compiled.items()}
    timers["onnxruntime"] = batch_timer(lambda: session.run(None, feeds), min_repeat_s)
    return interleaved_s(timers, rounds)


def max_abs_difference(outputs, references) -> float:
    worst = 0.0
    for got, want in zip(outputs, references):
        diff = np.abs(np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64))
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst


def max_relative_difference(outputs, references) -> float:
    """Per output, the largest absolute difference over the reference's largest magnitude; the worst."""
    worst = 0.0
    for got, want in zip(outputs, references):
        scale = float(np.abs(np.asarray(want, dtype=np.float64)).max()) if np.size(want) else 0.0
        worst = max(worst, max_abs_difference([got], [want]) / max(scale, 1e-30))
    return worst


def bench(model, backend, cache=None, repeat: int = 7, min_repeat_s: float = 0.1, seed: int = 0,
          built=None, profile: bool = False) -> BenchReport:
    """Build ``model`` from ``cache`` (or use ``built``) and time it against ONNX Runtime in this run.
    With ``profile``, also time each task's kernels (``tuner.profile``)."""
    built = built if built is not None else build(model, backend, cache)
    compiled = built.runner()
    arrays = random_inputs(model.inputs, seed)
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    session = onnxruntime_session(model, backend.num_cores)
    references = session.run(list(model.output_names), feeds)
    outputs = compiled.run(*arrays)

    times = interleaved_s({"tvm": model_batch_timer(compiled, arrays, min_repeat_s),
                           "onnxruntime": batch_timer(lambda: session.run(None, feeds), min_repeat_s)}, repeat)
    tvm_s, ort_s = times["tvm"], times["onnxruntime"]
    coverage = built.coverage
    if profile:
        from .profile import profile as profile_tasks

        task_times = tuple(profile_tasks(built, arrays))
    else:
        task_times = ()
    return BenchReport(
        model=model.name, backend=backend.key,
        tuner_ms=statistics.median(tvm_s) * 1e3, onnxruntime_ms=statistics.median(ort_s) * 1e3,
        max_abs_err=max_abs_difference(outputs, references),
        max_rel_err=max_relative_difference(outputs, references),
        tasks=coverage.tasks, tasks_tuned=coverage.tasks_tuned, flops_share_tuned=coverage.flops_share_tuned,
        num_threads=backend.num_cores,
        tuner_repeats_ms=tuple(s * 1e3 for s in tvm_s), onnxruntime_repeats_ms=tuple(s * 1e3 for s in ort_s),
        profile=task_times,
    )
