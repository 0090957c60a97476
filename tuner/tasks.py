"""Partition a model into fused TIR subgraphs ("tasks").

TVM's own passes do the work: ``LegalizeOps`` lowers each Relax op to a TIR
function, ``FuseOps``/``FuseTIR`` merge producers and epilogues into one
function per fused group, and ``RewriteDataflowReshape`` removes pure reshapes,
which run as a runtime builtin and need no tuning. Structurally identical
functions become one task whose weight counts its call sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import BuildError


@dataclass(frozen=True)
class Task:
    """A fused subgraph to tune.

    ``workload_key`` is the structural hash of the function: the same
    computation gets the same key in every process, run and model.
    ``func`` is the TIR function (with ``global_symbol="main"``); it is not
    serialized. ``global_names`` are the model's functions this task stands for.
    """

    name: str
    workload_key: str
    weight: int
    flops: float
    func: object = field(repr=False, compare=False)
    global_names: tuple[str, ...] = ()
    num_outputs: int = 1  # the function's last parameters are its outputs (destination-passing style)

    def to_json(self) -> dict:
        return {"name": self.name, "workload_key": self.workload_key, "weight": self.weight,
                "flops": self.flops, "global_names": list(self.global_names), "num_outputs": self.num_outputs}


@dataclass(frozen=True)
class Partition:
    """The fused Relax module of a model and its tasks."""

    module: object = field(repr=False)
    tasks: tuple[Task, ...]

    @property
    def total_flops(self) -> float:
        return sum(task.flops * task.weight for task in self.tasks)


def workload_key(func) -> str:
    import tvm_ffi

    return f"tir-{tvm_ffi.structural_hash(func):016x}"


def fuse(relax_module, target):
    """Legalize and fuse a Relax module for ``target`` (the "zero" pipeline), dropping pure reshapes.

    Inference BatchNorms are folded into the weights of the convolutions before them,
    so that they cost nothing (as ONNX Runtime does), and exp/erf/tanh use TVM's
    vectorizable fast-math expansions instead of scalar library calls.
    """
    from tvm import relax

    try:
        folded = relax.transform.FoldBatchnormToConv2D()(relax_module)
        with target:
            fused = relax.get_pipeline("zero")(folded)
            fused = relax.transform.FastMathTransform()(fused)
        fused = relax.transform.RewriteDataflowReshape()(fused)
        return relax.transform.DeadCodeElimination()(fused)
    except Exception as err:  # a lowering failure deep inside TVM
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        raise BuildError(f"fusing the model failed: {lines[-1].strip() if lines else type(err).__name__}") from err


def _call_sites(module) -> dict[str, tuple[int, int]]:
    """For each TIR function called with ``call_tir``: (number of call sites, number of input arguments)."""
    from tvm import relax

    call_tir = {"relax.call_tir", "relax.call_tir_inplace"}
    sites: dict[str, tuple[int, int]] = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) in call_tir:
            name = expr.args[0].name_hint
            count, _ = sites.get(name, (0, 0))
            sites[name] = (count + 1, len(expr.args[1].fields))

    for _, func in module.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return sites


def partition(model, backend) -> Partition:
    """Fuse ``model`` for ``backend`` and describe each distinct TIR function as a Task."""
    import tvm
    from tvm.s_tir.analysis import estimate_tir_flops

    fused = fuse(model.relax_module(), backend.tvm_target())
    sites = _call_sites(fused)
    by_key: dict[str, dict] = {}
    for global_var, func in fused.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or global_var.name_hint not in sites:
            continue
        main = func.with_attr("global_symbol", "main")
        count, num_inputs = sites[global_var.name_hint]
        entry = by_key.setdefault(workload_key(main), {"name": global_var.name_hint, "func": main, "weight": 0,
                                                       "names": [], "outputs": len(main.params) - num_inputs})
        entry["weight"] += count
        entry["names"].append(global_var.name_hint)
    tasks = []
    for key, entry in by_key.items():
        flops = float(estimate_tir_flops(tvm.IRModule({"main": entry["func"]})))
        tasks.append(Task(entry["name"], key, entry["weight"], flops, entry["func"], tuple(entry["names"]),
                          entry["outputs"]))
    tasks.sort(key=lambda task: -task.flops * task.weight)
    return Partition(fused, tuple(tasks))
