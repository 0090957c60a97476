"""Build a whole model from the tuning cache. Never measures anything.

Each task gets the best cached config of this backend when there is one, and
its search space's default config otherwise. Weights that a schedule packs into
a blocked layout are packed here, once (``tuner.prepack``). The result says which tasks had
a record and what share of the model's FLOPs they hold. For a CUDA target the
kernels are compiled through NVRTC as a check; the library keeps their source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BuildError, error_line
from .model import InputSpec
from .tasks import Partition


@dataclass(frozen=True)
class TaskSchedule:
    """How one task was scheduled in a build."""

    task_name: str
    workload_key: str
    weight: int
    flops: float
    rule: str
    source: str  # "cache" or "default"
    cached_cost_s: float | None = None
    note: str = ""
    global_names: tuple[str, ...] = ()  # the model's functions this task stands for
    nodes: tuple = ()  # the ONNX nodes it computes (tuner.provenance.Node)

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["global_names"] = list(self.global_names)
        data["nodes"] = [node.to_json() for node in self.nodes]
        return data



@dataclass(frozen=True)
class Coverage:
    tasks: int
    tasks_tuned: int
    flops_share_tuned: float

    def line(self) -> str:
        return (f"{self.tasks_tuned}/{self.tasks} tasks had a tuning record "
                f"({self.flops_share_tuned:.0%} of the model's FLOPs); the others use default schedules")

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BuiltModel:
    """A compiled model: the TVM executable and what went into it."""

    executable: object = field(repr=False)
    model_name: str
    inputs: tuple[InputSpec, ...]
    output_names: tuple[str, ...]
    backend: object
    schedules: tuple[TaskSchedule, ...]
    layout_plan: object = None  # tuner.layout_plan.LayoutPlan: the layout chosen per stage (``auto``)

    @property
    def coverage(self) -> Coverage:
        total = sum(s.flops * s.weight for s in self.schedules) or 1.0
        tuned = [s for s in self.schedules if s.source == "cache"]
        return Coverage(len(self.schedules), len(tuned), sum(s.flops * s.weight for s in tuned) / total)

    def metadata(self) -> dict:
        return {
            "format": "onnx-autotuner-build",
            "model": self.model_name,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": list(self.output_names),
            "backend": json.loads(self.backend.to_json()),
            "backend_key": self.backend.key,
            "coverage": self.coverage.to_json(),
            "tasks": [s.to_json() for s in self.schedules],
            **({"conv_layout": self.layout_plan.to_json()} if self.layout_plan is not None else {}),
        }

    def export(self, path, cc: str | None = None) -> Path:
        """Write the shared library, linked by ``cc`` (``toolchain.find_compiler``; None: this machine's
        default) and, beside it, ``PATH.json`` with the metadata ``load_module`` needs."""
        from .toolchain import export_library

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        export_library(self.executable, str(path), cc)
        sidecar_path(path).write_text(json.dumps(self.metadata(), indent=2))
        return path

    def runner(self):
        from .runtime import CompiledModel

        return CompiledModel(self.executable, self.inputs, self.output_names, self.backend.num_cores,
                             self.backend.is_cuda)


def sidecar_path(library_path) -> Path:
    return Path(str(library_path) + ".json")


def schedule_task(task, target, record=None):
    """Schedule one task with ``record``'s config, or with its space's default. Returns (func, TaskSchedule)."""
    import search_spaces

    from .lower import lower

    space = search_spaces.space_for(task.func, target)
    note = ""
    if record is not None:
        try:
            lowered = lower(task.func, search_spaces.Config.from_json(record.config), target, space)
            return lowered.func, _task_schedule(task, space.rule, "cache", record.result.mean_s)
        except search_spaces.InvalidConfigError as err:
            note = f"cached config rejected ({err}); default used"
    return lower(task.func, None, target, space).func, _task_schedule(task, space.rule, "default", None, note)


def _task_schedule(task, rule, source, cost_s, note=""):
    return TaskSchedule(task.name, task.workload_key, task.weight, task.flops, rule, source, cost_s, note,
                        task.global_names, task.nodes)


def apply_schedules(parts: Partition, backend, cache=None):
    """Return the fused module with every task's function replaced by its schedule, and the TaskSchedules."""
    target = backend.tvm_target()
    module = parts.module.clone()
    schedules = []
    for task in parts.tasks:
        record = cache.best(backend.key, task.workload_key) if cache is not None else None
        func, info = schedule_task(task, target, record)
        func = func.without_attr("global_symbol").with_attr("tirx.is_scheduled", True)
        for name in task.global_names:
            module.update_func(module.get_global_var(name), func)
        schedules.append(info)
    return module, tuple(schedules)


def build(model, backend, cache=None, plan=None) -> BuiltModel:
    """Compile ``model`` for ``backend`` with the best schedules ``cache`` holds (defaults elsewhere).
    With ``conv_layout`` auto, ``plan`` (a ``tuner.layout_plan.LayoutPlan``) replaces the one chosen
    from the cache."""
    import tvm

    from .layout_plan import planned_partition
    from .prepack import prepack_weights

    parts, plan = planned_partition(model, backend, cache, plan)
    module, schedules = apply_schedules(parts, backend, cache)
    try:
        if not backend.is_cuda:  # folding the packing runs it, which needs the device; GPU rules pack nothing
            module = prepack_weights(module, backend.tvm_target())
        executable = tvm.compile(module, target=backend.tvm_target())
    except Exception as err:  # codegen failures carry long C++ traces
        raise BuildError(f"compiling {model.name} failed: {error_line(err, last=True)}") from err
    if backend.is_cuda:
        _check_kernels(executable, backend)
    return BuiltModel(executable, model.name, model.inputs, model.output_names, backend, schedules, plan)


def _check_kernels(executable, backend) -> None:
    """Compile the CUDA kernels through NVRTC now: the library holds their source, which a GPU machine
    compiles when it loads it, and an error should show here rather than there."""
    from .cuda import compile_kernels, kernel_sources

    for source in kernel_sources(executable):
        compile_kernels(source, str(backend.target["arch"]))
