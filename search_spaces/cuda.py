"""Rules for CUDA targets, on TVM's ``dlight`` GPU schedules: every loop bound to blocks and threads.

* ``cuda_matmul``: matmul-like reductions (matmul, conv as an implicit GEMM), dlight's ``Matmul``
  schedule with its tiling as knobs: threads per block (``block_x`` x ``block_y``), outputs per
  thread (``micro_x`` x ``micro_y``), the reduction step (``micro_k``), vector width, unrolling,
  and whether the input tiles are staged in shared memory. ``check`` rejects configs beyond the
  GPU's limits (threads per block, shared memory per block) and accumulator tiles that spill.
* ``cuda_fallback``: dlight's ``Fallback`` (one thread per output: element-wise ops, pooling,
  layout copies) with the threads per block as the knob.
* ``cuda_gemv``, ``cuda_reduction``, ``cuda_general_reduction``: dlight's rule of that name, whose
  only config is its default (dlight fixes their thread counts inside the rule).
"""

from __future__ import annotations

import tvm
from tvm.error import InternalError
from tvm.s_tir import Schedule
from tvm.s_tir.dlight import gpu
from tvm.s_tir.schedule import ScheduleError

from .config import InvalidConfigError
from .space import NotApplicable, Rule, SearchSpace

DEFAULT_SHARED_MEMORY_BYTES = 48 * 1024  # what a kernel gets without opting in to more
_MAX_ACCUMULATORS = 64  # outputs per thread beyond which the accumulators spill out of registers
_FIXED_RULES = (("cuda_gemv", gpu.GEMV), ("cuda_reduction", gpu.Reduction),
                ("cuda_general_reduction", gpu.GeneralReduction))
CUDA_RULES = ("cuda_matmul",) + tuple(name for name, _ in _FIXED_RULES) + ("cuda_fallback",)
_THREADS = (32, 64, 128, 256, 512, 1024)


def _limit(target: tvm.target.Target, name: str, default: int) -> int:
    value = target.attrs.get(name) if target.attrs is not None else None
    return int(value) if value is not None else default


def _replay(sch: Schedule, scheduled: Schedule) -> None:
    """Repeat on ``sch`` the primitives dlight applied to a schedule of the same function."""
    scheduled.trace.apply_to_schedule(sch, remove_postproc=False)


class FixedDlightRule(Rule):
    """One dlight rule as it is: a single config with no knobs."""

    knobs: dict = {}

    def __init__(self, name: str, scheduled: Schedule):
        self.name = name
        self._scheduled = scheduled

    def default_values(self) -> dict:
        return {}

    def check(self, values: dict) -> None:
        """The only config is always legal."""

    def schedule(self, sch: Schedule, values: dict) -> None:
        _replay(sch, self._scheduled)


class _ConfiguredMatmul(gpu.Matmul):
    """dlight's matmul schedule with a given tiling instead of its fixed one."""

    def __init__(self, config: gpu.Matmul.Config):
        self._config = config

    def get_configs(self, target):
        return self._config


class CudaMatmulRule(Rule):
    name = "cuda_matmul"
    knobs = {
        "block_x": (4, 8, 16, 32),
        "block_y": (4, 8, 16, 32),
        "micro_x": (1, 2, 4, 8),
        "micro_y": (1, 2, 4, 8),
        "micro_k": (4, 8, 16, 32),
        "vector": (1, 2, 4),
        "unroll": (0, 16, 64, 256),
        "shared": (True, False),
    }
    # dlight's own choice for CUDA
    _DEFAULT = {"block_x": 8, "block_y": 16, "micro_x": 4, "micro_y": 4, "micro_k": 16, "vector": 2,
                "unroll": 256, "shared": True}

    def __init__(self, func, target: tvm.target.Target):
        self.func = func
        self.target = target
        self.max_threads = _limit(target, "max_num_threads", 1024)
        self.max_shared_bytes = _limit(target, "max_shared_memory_per_block", DEFAULT_SHARED_MEMORY_BYTES)
        self.element_bytes = max((tvm.DataType(p.ty.dtype).bits + 7) // 8 for p in func.params)
        if _try_rule(_ConfiguredMatmul(self._dlight_config(self._DEFAULT)), func, target) is None:
            raise NotApplicable("not a matmul-like reduction")

    def default_values(self) -> dict:
        return dict(self._DEFAULT)

    def shared_bytes(self, values: dict) -> int:
        """Shared memory of the two staged input tiles, rows padded by the vector width."""
        if not values["shared"]:
            return 0
        rows = values["block_x"] * values["micro_x"] + values["block_y"] * values["micro_y"]
        return rows * (values["micro_k"] + values["vector"]) * self.element_bytes

    def check(self, values: dict) -> None:
        threads = values["block_x"] * values["block_y"]
        if threads > self.max_threads:
            raise InvalidConfigError(f"rule {self.name!r}: {threads} threads per block, the GPU allows "
                                     f"{self.max_threads}")
        if values["micro_x"] * values["micro_y"] > _MAX_ACCUMULATORS:
            raise InvalidConfigError(f"rule {self.name!r}: {values['micro_x']}x{values['micro_y']} outputs "
                                     f"per thread, at most {_MAX_ACCUMULATORS} fit in registers")
        if values["micro_x"] % values["vector"] or values["micro_y"] % values["vector"]:
            raise InvalidConfigError(f"rule {self.name!r}: vector {values['vector']} does not divide the "
                                     f"outputs per thread {values['micro_x']}x{values['micro_y']}")
        shared = self.shared_bytes(values)
        if shared > self.max_shared_bytes:
            raise InvalidConfigError(f"rule {self.name!r}: {shared} bytes of shared memory per block, the "
                                     f"GPU allows {self.max_shared_bytes}")

    def schedule(self, sch: Schedule, values: dict) -> None:
        scheduled = self._dlight(values)
        if scheduled is None:
            raise InvalidConfigError(f"rule {self.name!r}: dlight's matmul schedule does not apply")
        _replay(sch, scheduled)

    def _dlight(self, values: dict) -> Schedule | None:
        return _ConfiguredMatmul(self._dlight_config(values)).apply(self.func, self.target, False)

    @staticmethod
    def _dlight_config(values: dict) -> gpu.Matmul.Config:
        return gpu.Matmul.Config(
            block_size_x=values["block_x"], block_size_y=values["block_y"], micro_size_x=values["micro_x"],
            micro_size_y=values["micro_y"], micro_size_k=values["micro_k"], vector_size=values["vector"],
            unroll=values["unroll"], use_shared=values["shared"], storage_align=values["shared"])


class CudaFallbackRule(Rule):
    """dlight's fallback (one thread per output: element-wise ops, pooling, layout copies) with the
    threads per block as the knob; dlight takes the GPU's maximum, which is the default."""

    name = "cuda_fallback"

    def __init__(self, func, target: tvm.target.Target):
        self.func = func
        self.target = target
        self.max_threads = _limit(target, "max_num_threads", 1024)
        self.knobs = {"threads": tuple(t for t in _THREADS if t <= self.max_threads)}
        if self._dlight(self.knobs["threads"][-1]) is None:
            raise NotApplicable("dlight's fallback rejects it")

    def default_values(self) -> dict:
        return {"threads": self.knobs["threads"][-1]}

    def check(self, values: dict) -> None:
        if values["threads"] > self.max_threads:
            raise InvalidConfigError(f"rule {self.name!r}: {values['threads']} threads per block, the GPU "
                                     f"allows {self.max_threads}")

    def schedule(self, sch: Schedule, values: dict) -> None:
        scheduled = self._dlight(values["threads"])
        if scheduled is None:
            raise InvalidConfigError(f"rule {self.name!r}: dlight's fallback does not apply")
        _replay(sch, scheduled)

    def _dlight(self, threads: int) -> Schedule | None:
        target = tvm.target.Target({**self.target.export(), "max_threads_per_block": threads})
        return _try_rule(gpu.Fallback(), self.func, target)


def _try_rule(rule, func, target) -> Schedule | None:
    """dlight's schedule of ``func``, or None where the rule does not fit; dlight's analyses assert
    on some shapes they do not handle (a GEMV without spatial loops, say) instead of declining."""
    try:
        return rule.apply(func, target, False)
    except (AssertionError, ScheduleError, InternalError):
        return None


def cuda_space_for(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> SearchSpace:
    """The CUDA search space of ``func``: the matmul rule where dlight's matmul schedule fits, else
    the first other dlight rule that does."""
    try:
        space = SearchSpace(func, target, CudaMatmulRule(func, target))
        space.apply(space.default_config())
        return space
    except (NotApplicable, InvalidConfigError):
        pass
    for name, make in _FIXED_RULES:
        scheduled = _try_rule(make(), func, target)
        if scheduled is not None:
            return SearchSpace(func, target, FixedDlightRule(name, scheduled))
    try:
        return SearchSpace(func, target, CudaFallbackRule(func, target))
    except NotApplicable:
        raise InvalidConfigError("no CUDA schedule rule fits this function (dlight's fallback rejects it)") from None
