"""Fixed-width feature vectors of scheduled TIR modules.

One row per candidate, three parts (see ``feature_names()``):

* ``store.<pool>.<name>``: MetaSchedule's PerStoreFeature (164 values per
  BufferStore of the lowered candidate; the number of stores varies), pooled over
  the stores with each of ``STORE_POOLS``: the row of the heaviest store (most
  loop iterations, then most float multiply-adds), the sum and the maximum of the
  rows, which ranked best of the poolings tried (docs/benchmarks.md);
* ``loop.<name>``: loop-nest facts of the scheduled ``main`` that PerStoreFeature
  lacks or only has per store (``tir_facts.LOOP_FACT_NAMES``), among them the work of
  the innermost 1..8 loops around the heaviest store (feature version 2);
* ``task.<name>``, only with ``task_func``: the size of the task's computation
  (``tir_facts.TASK_FACT_NAMES``), the same on every row of one task, so that
  rows of different tasks are comparable.

Inputs are the schedules as applied, without MetaSchedule's postprocessors:
PerStoreFeature runs its own lowering passes (init blocks, buffer compaction,
simplification) and reads loop kinds (parallel, vectorized, unrolled) and the
``pragma_auto_unroll_max_step`` annotation directly, so a schedule that calls
``sch.parallel``/``sch.vectorize`` itself needs no lowering first. Schedules
that only carry MetaSchedule's ``meta_schedule.parallel``-style annotations
would need its ``RewriteParallelVectorizeUnroll`` postprocessor to be seen.

The MetaSchedule ``TuneContext`` that PerStoreFeature takes is built without its
Python ``__init__``, which imports ``tvm.s_tir.tensor_intrin`` (about 22 s). The
extractor reads only the context's target (its "gpu" key) and thread count.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms

from .errors import CostModelError
from .tir_facts import LOOP_FACT_NAMES, TASK_FACT_NAMES, loop_facts, task_facts

FEATURE_VERSION = 2  # bump whenever the layout or meaning of a column changes (2: loop.heaviest_store_inner_work_*)
STORE_POOLS = ("heaviest", "sum", "max")

_ARITH = ("float_mad", "float_add_sub", "float_mul", "float_div_mod", "float_cmp", "float_math_func",
          "float_other_func", "int_mad", "int_add_sub", "int_mul", "int_div_mod", "int_cmp",
          "int_math_func", "int_other_func", "bool_op", "select_op")
_POSITIONS = ("none", "inner_spatial", "middle_spatial", "outer_spatial", "inner_reduce",
              "middle_reduce", "outer_reduce", "mixed")
_GPU = ("is_gpu", "block_x", "block_y", "block_z", "thread_x", "thread_y", "thread_z", "vthread")
_BUFFER = ("read", "write", "read_write", "bytes", "unique_bytes", "lines", "unique_lines",
           "reuse_loop", "reuse_serial", "reuse_none", "reuse_dis_iter", "reuse_dis_bytes", "reuse_ct",
           "bytes_d_reuse_ct", "unique_bytes_d_reuse_ct", "lines_d_reuse_ct", "unique_lines_d_reuse_ct",
           "stride")
_BUFFERS_PER_STORE = 5
_CURVE_SAMPLES = 10
_ALLOC = ("alloc_size", "alloc_prod", "alloc_outer_prod", "alloc_inner_prod")
_OUTER = ("outer_prod", "num_loops", "auto_unroll_max_step")


def _store_names() -> list[str]:
    """Names of PerStoreFeature's 164 columns, in its order (per_store_feature.cc)."""
    names = [f"arith.{name}" for name in _ARITH]
    for kind in ("vectorize", "unroll", "parallel"):
        names += [f"{kind}.num", f"{kind}.prod", f"{kind}.len"]
        names += [f"{kind}.pos_{position}" for position in _POSITIONS]
    names += [f"gpu.{name}" for name in _GPU]
    for index in range(_BUFFERS_PER_STORE):
        names += [f"buffer{index}.{name}" for name in _BUFFER]
    names += [f"arith_intensity.{index}" for index in range(_CURVE_SAMPLES)]
    return names + [f"alloc.{name}" for name in _ALLOC] + [f"outer.{name}" for name in _OUTER]


STORE_NAMES = tuple(_store_names())


def feature_names(with_task: bool = False) -> list[str]:
    """Column names of ``extract``'s rows (``with_task``: when a ``task_func`` is given)."""
    names = [f"store.{pool}.{name}" for pool in STORE_POOLS for name in STORE_NAMES]
    names += list(LOOP_FACT_NAMES)
    return names + list(TASK_FACT_NAMES) if with_task else names


def tune_context(target: tvm.target.Target, num_threads: int, mod: tvm.IRModule | None = None) -> ms.TuneContext:
    """A MetaSchedule TuneContext made without ``TuneContext.__init__`` (see the module
    docstring): enough for feature extraction, and for MetaSchedule's cost models,
    which group rows by ``mod``."""
    context = ms.TuneContext.__new__(ms.TuneContext)
    context.__init_handle_by_constructor__(
        ms._ffi_api.TuneContext,  # pylint: disable=protected-access
        mod, target, None, None, "main", num_threads, 1, None)
    return context


def _as_schedule(mod, index: int) -> Schedule:
    if isinstance(mod, Schedule):
        return mod
    if not isinstance(mod, tvm.IRModule):
        raise CostModelError(f"candidate {index}: expected a tvm.IRModule or tvm.s_tir.Schedule, "
                             f"got {type(mod).__name__}")
    if not any(gv.name_hint == "main" for gv in mod.get_global_vars()):
        names = sorted(gv.name_hint for gv in mod.get_global_vars())
        raise CostModelError(f"candidate {index}: the module has no 'main' function (it has {names})")
    return Schedule(mod)


def store_rows(mods: list, target: tvm.target.Target, num_threads: int = 1) -> list[np.ndarray]:
    """PerStoreFeature of each candidate: one (n_stores, 164) float64 array each."""
    schedules = [_as_schedule(mod, index) for index, mod in enumerate(mods)]
    if not schedules:
        return []
    extractor = ms.feature_extractor.PerStoreFeature(
        buffers_per_store=_BUFFERS_PER_STORE, arith_intensity_curve_num_samples=_CURVE_SAMPLES)
    candidates = [ms.MeasureCandidate(schedule, []) for schedule in schedules]
    tensors = extractor.extract_from(tune_context(target, num_threads), candidates)
    return [tensor.numpy() for tensor in tensors]


_OUTER_PROD = STORE_NAMES.index("outer.outer_prod")
_FLOAT_MAD = STORE_NAMES.index("arith.float_mad")


def pool_rows(rows: np.ndarray) -> np.ndarray:
    """Pool a variable number of store rows into ``len(STORE_POOLS) * 164`` values."""
    if rows.shape[0] == 0:
        return np.zeros(len(STORE_POOLS) * len(STORE_NAMES))
    heaviest = rows[np.lexsort((rows[:, _FLOAT_MAD], rows[:, _OUTER_PROD]))[-1]]
    pooled = {"heaviest": heaviest, "sum": rows.sum(axis=0), "max": rows.max(axis=0)}
    return np.concatenate([pooled[pool] for pool in STORE_POOLS])


def _num_cores(target: tvm.target.Target) -> int:
    cores = target.attrs.get("num-cores") if target.attrs is not None else None
    return max(1, int(cores)) if cores is not None else 1


def task_features(func: tvm.tirx.PrimFunc) -> np.ndarray:
    """Task-level features of an unscheduled task function (``TASK_FACT_NAMES``), float32."""
    if not isinstance(func, tvm.tirx.PrimFunc):
        raise CostModelError(f"task_features needs a tvm.tirx.PrimFunc, got {type(func).__name__}")
    return np.asarray(task_facts(func), dtype=np.float32)


def extract(mods: list, target: tvm.target.Target, task_func: tvm.tirx.PrimFunc | None = None,
            *, num_threads: int = 1) -> np.ndarray:
    """Feature rows of scheduled candidates: a (len(mods), d) float32 array.

    ``mods`` holds ``tvm.IRModule``s with a ``main`` PrimFunc (or ``tvm.s_tir.Schedule``s);
    ``d`` is ``len(feature_names(task_func is not None))``. ``num_threads`` threads
    extract PerStoreFeature in parallel.
    """
    if not isinstance(target, tvm.target.Target):
        raise CostModelError(f"target must be a tvm.target.Target, got {type(target).__name__}")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise CostModelError(f"num_threads must be a positive integer, got {num_threads!r}")
    mods = list(mods)
    width = len(feature_names(task_func is not None))
    if not mods:
        return np.zeros((0, width), dtype=np.float32)
    cores = _num_cores(target)
    rows = []
    for rows_of_stores, mod in zip(store_rows(mods, target, num_threads), mods):
        main = (mod.mod if isinstance(mod, Schedule) else mod)["main"]
        rows.append(np.concatenate([pool_rows(rows_of_stores), loop_facts(main, cores)]))
    features = np.asarray(rows, dtype=np.float32)
    if task_func is not None:
        task = task_features(task_func)
        features = np.hstack([features, np.broadcast_to(task, (len(mods), task.size))])
    if not np.all(np.isfinite(features)):
        raise CostModelError("feature extraction produced non-finite values (a bug in costmodel.features)")
    return features
