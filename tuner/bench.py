"""Compare a built model with ONNX Runtime, in the same run, on the same inputs and thread count."""

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
    onnxruntime_ms: float
    max_abs_err: float
    tasks: int
    tasks_tuned: int
    flops_share_tuned: float
    num_threads: int
    tuner_repeats_ms: tuple[float, ...] = field(default=())
    onnxruntime_repeats_ms: tuple[float, ...] = field(default=())

    @property
    def speedup_vs_onnxruntime(self) -> float:
        return self.onnxruntime_ms / self.tuner_ms

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["speedup_vs_onnxruntime"] = self.speedup_vs_onnxruntime
        data["tuner_repeats_ms"] = list(self.tuner_repeats_ms)
        data["onnxruntime_repeats_ms"] = list(self.onnxruntime_repeats_ms)
        return data

    def table(self) -> str:
        return "\n".join([
            f"model {self.model} on {self.backend}, {self.num_threads} threads",
            f"  tuner (TVM)   {self.tuner_ms:10.3f} ms  (median of {len(self.tuner_repeats_ms)} repeats)",
            f"  onnxruntime   {self.onnxruntime_ms:10.3f} ms  (median of {len(self.onnxruntime_repeats_ms)} repeats)",
            f"  speedup vs onnxruntime: {self.speedup_vs_onnxruntime:.2f}x   max |difference|: {self.max_abs_err:.3g}",
            f"  {self.tasks_tuned}/{self.tasks} tasks tuned ({self.flops_share_tuned:.0%} of FLOPs)",
        ])


def random_inputs(inputs, seed: int = 0) -> list[np.ndarray]:
    """Standard-normal floats, small non-negative integers, random booleans: one array per input."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in inputs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(spec.shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, spec.shape).astype(dtype))
        else:
            arrays.append(rng.integers(0, 8, spec.shape).astype(dtype))
    return arrays


def onnxruntime_session(model, num_threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def time_callable_s(run, repeat: int, min_repeat_s: float) -> list[float]:
    """Seconds per call for each repeat: one warm-up call, then ``repeat`` batches of equal size."""
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, math.ceil(min_repeat_s / once))
    results = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            run()
        results.append((time.perf_counter() - start) / number)
    return results


def number_for(seconds_once: float, min_repeat_s: float) -> int:
    return max(1, math.ceil(min_repeat_s / max(seconds_once, 1e-7)))


def max_abs_difference(outputs, references) -> float:
    worst = 0.0
    for got, want in zip(outputs, references):
        diff = np.abs(np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64))
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    return worst


def bench(model, backend, cache=None, repeat: int = 7, min_repeat_s: float = 0.1, seed: int = 0,
          built=None) -> BenchReport:
    """Build ``model`` from ``cache`` (or use ``built``) and time it against ONNX Runtime in this run."""
    built = built if built is not None else build(model, backend, cache)
    compiled = built.runner()
    arrays = random_inputs(model.inputs, seed)
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    session = onnxruntime_session(model, backend.num_cores)
    references = session.run(list(model.output_names), feeds)
    outputs = compiled.run(*arrays)

    ort_s = time_callable_s(lambda: session.run(None, feeds), repeat, min_repeat_s)
    once = time_callable_s(lambda: compiled.run(*arrays), 1, 0.0)[0]
    tvm_s = compiled.time_s(*arrays, number=number_for(once, min_repeat_s), repeat=repeat)
    coverage = built.coverage
    return BenchReport(
        model=model.name, backend=backend.key,
        tuner_ms=statistics.median(tvm_s) * 1e3, onnxruntime_ms=statistics.median(ort_s) * 1e3,
        max_abs_err=max_abs_difference(outputs, references),
        tasks=coverage.tasks, tasks_tuned=coverage.tasks_tuned, flops_share_tuned=coverage.flops_share_tuned,
        num_threads=backend.num_cores,
        tuner_repeats_ms=tuple(s * 1e3 for s in tvm_s), onnxruntime_repeats_ms=tuple(s * 1e3 for s in ort_s),
    )
