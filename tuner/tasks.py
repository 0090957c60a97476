"""Partition a model into fused TIR subgraphs ("tasks").

TVM's own passes do the work: ``LegalizeOps`` lowers each Relax op to a TIR
function, ``FuseOps``/``FuseTIR`` merge producers and epilogues into one
function per fused group, and ``RewriteDataflowReshape`` removes pure reshapes,
which run as a runtime builtin and need no tuning. Structurally identical
functions become one task whose weight counts its call sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import BuildError, error_line


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
    nodes: tuple = ()  # the ONNX nodes (tuner.provenance.Node) its call sites compute, in graph order

    def to_json(self) -> dict:
        return {"name": self.name, "workload_key": self.workload_key, "weight": self.weight,
                "flops": self.flops, "global_names": list(self.global_names), "num_outputs": self.num_outputs,
                "nodes": [node.to_json() for node in self.nodes]}


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


def fuse(relax_module, target, conv_block=0):
    """Legalize and fuse a Relax module for ``target`` (the "zero" pipeline), dropping pure reshapes.

    The graph rewrites of ``tuner.rewrites`` run first (n-ary sums become binary adds, inference
    BatchNorms are folded into the convolutions before them, ...), then with a ``conv_block`` the
    convolutions go to the blocked layout NCHW[b]c (``tuner.layout``; a dict {(h, w): block} gives
    each stage's, as ``tuner.layout_plan`` chooses; for a CPU the plain 1x1 ones compute over a flat row
    of pixels, ``tuner.pointwise_conv``), and exp/erf/tanh use TVM's
    vectorizable fast-math expansions instead of scalar library calls. Parameters of a
    TIR function that are constants at every call site (weights) are listed in its
    ``layout_free_buffers`` attribute, so that a schedule may repack them at build time.
    """
    return fuse_with_provenance(relax_module, target, conv_block)[0]


def fuse_with_provenance(relax_module, target, conv_block=0):
    """``fuse``, and for each function of the fused module that ``main`` calls, the indices of the ONNX
    nodes its call sites compute (``tuner.provenance``; empty for a module from elsewhere)."""
    import tvm
    from tvm import relax

    from .layout import blocked_layout, legalize_conv2d
    from .provenance import fused_nodes
    from .rewrites import rewrite

    try:
        folded = rewrite(relax_module)
        if conv_block:
            folded = blocked_layout(conv_block)(folded)
        # on Relax ops, before they are legalized: after, an erf is a scalar libm call per element
        folded = relax.transform.FastMathTransform()(folded)
        with target:  # the "zero" pipeline, with the module kept from just before FuseOps
            legal = tvm.transform.Sequential([relax.transform.LegalizeOps({"relax.nn.conv2d": legalize_conv2d}),
                                              relax.transform.AnnotateTIROpPattern(),
                                              relax.transform.FoldConstant()])(folded)
            grouped = relax.transform.FuseOps()(legal)
            fused = relax.transform.FuseTIR()(grouped)
        fused = relax.transform.RewriteDataflowReshape()(fused)
        fused = relax.transform.DeadCodeElimination()(fused)
    except Exception as err:  # a lowering failure deep inside TVM
        raise BuildError(f"fusing the model failed: {error_line(err, last=True)}") from err
    return _mark_layout_free(fused), fused_nodes(legal, grouped)


@dataclass
class _Sites:
    """How a TIR function is called: how often, with how many inputs, and which inputs are always constants."""

    count: int = 0
    num_inputs: int = 0
    constant: tuple[bool, ...] = ()

    def add(self, args) -> None:
        from tvm.ir.expr import Constant

        flags = tuple(isinstance(arg, Constant) for arg in args)
        self.constant = flags if not self.count else tuple(a and b for a, b in zip(self.constant, flags))
        self.count += 1
        self.num_inputs = len(args)


def _call_sites(module) -> dict[str, _Sites]:
    """For each TIR function called with ``call_tir``: its call sites."""
    from tvm import relax

    call_tir = {"relax.call_tir", "relax.call_tir_inplace"}
    sites: dict[str, _Sites] = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", None) in call_tir:
            sites.setdefault(expr.args[0].name_hint, _Sites()).add(expr.args[1].fields)

    for _, func in module.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return sites


def _mark_layout_free(module):
    import tvm

    for global_var, sites in _call_sites(module).items():
        func = module[global_var]
        constant = [index for index, flag in enumerate(sites.constant) if flag]
        if isinstance(func, tvm.tirx.PrimFunc) and constant:
            module.update_func(module.get_global_var(global_var), func.with_attr("layout_free_buffers", constant))
    return module


def partition(model, backend, layout=None) -> Partition:
    """Fuse ``model`` for ``backend`` and describe each distinct TIR function as a Task.

    ``layout`` (a block or a stage plan, see ``fuse``) replaces the backend's ``conv_block``; where that
    is ``tuner.layout_plan.AUTO``, the tasks are those of every candidate layout (what tuning measures
    before it chooses), the module NCHW's."""
    from .layout_plan import AUTO, union, variants

    layout = backend.conv_block if layout is None else layout
    if isinstance(layout, int) and layout == AUTO:
        return union(variants(model, backend))
    return _partition(model, backend, layout)


def _partition(model, backend, layout) -> Partition:
    import tvm
    from tvm.s_tir.analysis import estimate_tir_flops

    fused, origins = fuse_with_provenance(model.relax_module(), backend.tvm_target(), layout)
    graph_nodes = model.nodes
    sites = _call_sites(fused)
    by_key: dict[str, dict] = {}
    for global_var, func in fused.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or global_var.name_hint not in sites:
            continue
        main = func.with_attr("global_symbol", "main")
        site = sites[global_var.name_hint]
        entry = by_key.setdefault(workload_key(main), {"name": global_var.name_hint, "func": main, "weight": 0,
                                                       "names": [], "outputs": len(main.params) - site.num_inputs})
        entry["weight"] += site.count
        entry["names"].append(global_var.name_hint)
    tasks = []
    for key, entry in by_key.items():
        flops = float(estimate_tir_flops(tvm.IRModule({"main": entry["func"]})))
        indices = sorted(set().union(*(origins.get(name, set()) for name in entry["names"])))
        tasks.append(Task(entry["name"], key, entry["weight"], flops, entry["func"], tuple(entry["names"]),
                          entry["outputs"], tuple(graph_nodes[index] for index in indices)))
    tasks.sort(key=lambda task: -task.flops * task.weight)
    return Partition(fused, tuple(tasks))
