"""The convolution layout chosen per stage from measured records (``--conv-layout auto``).

A blocked layout wins on some convolutions and loses on others (on a Zen 1, NCHW16c ran ResNet-50's
1x1 convolutions of 56x56 and 28x28 maps faster and its 7x7 stage slower), so the block is the
search's choice, made from what each layout's tasks measure. A *stage* is the convolutions that write
maps of one spatial size, with the tasks after them up to the next stage's first convolution (a
pool, the graph's input conversion). One block serves a whole stage: its convolutions feed each
other, and a conversion between them would fall on nearly every edge, while between stages it falls
on the strided edge, once. Dynamic programming over the stages in graph order picks the plan of least
total: each stage's tasks' best records in its layout, plus a conversion wherever two neighbouring
stages differ, costed as its bytes at the bandwidth that the measured conversions reached.

``tuner.tune`` with ``conv_block=AUTO`` measures the tasks of every candidate layout first, then
chooses the plan and tunes its tasks only; ``tuner.build`` chooses the same plan from the cache.
Records can misjudge a whole model (a kernel timed alone is not the kernel among its neighbours), so
at the end of tuning the candidate plans' builds are timed against each other
(``tuner.plan_timing``) and the cache keeps the winner for this model, which ``build`` then follows.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from dataclasses import dataclass, replace

AUTO = -1
CANDIDATES = (0, 16)  # NCHW16c beat NCHW8c untuned and tuned on AVX2; AVX-512's vectors hold 16
DEFAULT_BANDWIDTH = 8e9  # bytes/s of a conversion when none has been measured


@dataclass(frozen=True)
class Stage:
    spatial: tuple[int, int]  # the height and width its convolutions write
    costs_s: dict  # block -> its tasks' weighted best records summed; None where one has no record
    out_bytes: int  # what its last task writes: the next stage reads it
    block: int = 0


@dataclass(frozen=True)
class LayoutPlan:
    stages: tuple[Stage, ...]
    bandwidth: float  # bytes/s that a conversion is costed at
    timed_ms: tuple = ()  # (plan text, median ms of its build) per candidate, where builds were timed

    def blocks(self):
        """What ``tuner.tasks.fuse`` takes: 0 or one block for every stage, else {(h, w): block}."""
        chosen = {stage.block for stage in self.stages}
        if len(chosen) <= 1:
            return chosen.pop() if chosen else 0
        return {stage.spatial: stage.block for stage in self.stages}

    def with_blocks(self, blocks) -> "LayoutPlan":
        """This plan with the stages' blocks set from ``blocks`` (what ``blocks()`` returns)."""
        def block_of(stage):
            return blocks if isinstance(blocks, int) else blocks.get(stage.spatial, 0)

        return replace(self, stages=tuple(replace(stage, block=block_of(stage)) for stage in self.stages))

    def to_json(self) -> dict:
        data = {"bandwidth_gb_s": self.bandwidth / 1e9,
                "stages": [{"spatial": list(stage.spatial), "layout": layout_name(stage.block),
                            "ms": {layout_name(block): None if cost is None else cost * 1e3
                                   for block, cost in stage.costs_s.items()}} for stage in self.stages]}
        if self.timed_ms:
            data["timed_ms"] = [{"plan": text, "ms": ms} for text, ms in self.timed_ms]
        return data

    def describe(self) -> str:
        return describe(self.to_json())

    def layouts_text(self) -> str:
        """The stages' layouts only (``16x16 nchw, 8x8 nchw16c``), or one layout where all agree."""
        blocks = self.blocks()
        if isinstance(blocks, int):
            return layout_name(blocks)
        return ", ".join(f"{h}x{w} {layout_name(block)}" for (h, w), block in blocks.items())

    def stages_text(self) -> str:
        """Each stage's layout and its tasks' summed records in each layout."""
        return stages_text(self.to_json())


def describe(plan: dict) -> str:
    """A plan, as ``LayoutPlan.to_json`` writes it (a tuning report keeps that), in one line: each
    stage's layout and why, then the timed builds where there were."""
    text = "convolution layout per stage: " + stages_text(plan)
    if plan.get("timed_ms"):
        text += "; chosen by timing whole builds: " + ", ".join(
            f"{item['plan']} {item['ms']:.2f} ms" for item in plan["timed_ms"])
    return text


def stages_text(plan: dict) -> str:
    parts = []
    for stage in plan["stages"]:
        costs = ", ".join(f"{name} {'-' if ms is None else f'{ms:.2f} ms'}" for name, ms in stage["ms"].items())
        parts.append(f"{stage['spatial'][0]}x{stage['spatial'][1]}: {stage['layout']} ({costs})")
    return "; ".join(parts) if parts else "no convolutions"


def layout_name(block: int) -> str:
    return f"nchw{block}c" if block else "nchw"


def variants(model, backend) -> dict:
    """{block: Partition} for each layout the backend's ``conv_block`` stands for."""
    from .tasks import partition

    blocks = CANDIDATES if backend.conv_block == AUTO else (backend.conv_block,)
    return {block: partition(model, backend, layout=block) for block in blocks}


def union(parts: dict):
    """One Partition of the tasks of all ``parts`` ({block: Partition}), with NCHW's module."""
    from .tasks import Partition

    tasks = {task.workload_key: task for partition in parts.values() for task in partition.tasks}
    return Partition(parts[0].module, tuple(sorted(tasks.values(), key=lambda task: -task.flops * task.weight)))


def planned_partition(model, backend, cache=None, plan=None):
    """The partition a build uses: with ``AUTO`` that of ``plan``, else of the plan that timing whole
    builds chose for this model (stored in ``cache``), else of the plan chosen from ``cache``'s records
    (NCHW where a layout has none); without ``AUTO`` the backend's layout. And the plan (or None)."""
    from .tasks import partition

    if backend.conv_block != AUTO:
        return partition(model, backend), None
    parts = variants(model, backend)
    plan = plan or stored_plan(parts, backend, cache) or choose_plan(parts, records_best(backend, cache))
    return plan_partition(model, backend, plan, parts), plan


def records_best(backend, cache):
    """``best_s(workload_key)``: the task's best record in ``cache`` in seconds, or None."""
    def best_s(workload_key):
        record = cache.best(backend.key, workload_key) if cache is not None else None
        return record.result.mean_s if record is not None else None

    return best_s


def model_key(parts: dict) -> str:
    """The model's key for a stored choice: a hash of its NCHW tasks (structure, not weights)."""
    tasks = sorted(f"{task.workload_key}:{task.weight}" for task in parts[0].tasks)
    return hashlib.sha256("\n".join(tasks).encode()).hexdigest()[:20]


def stored_plan(parts: dict, backend, cache):
    """The plan that timing whole builds chose for this model and backend, or None."""
    choice = cache.layout_choice(backend.key, model_key(parts)) if cache is not None else None
    if choice is None:
        return None
    blocks = choice["blocks"]
    blocks = blocks if isinstance(blocks, int) else {(h, w): block for h, w, block in blocks}
    plan = choose_plan(parts, records_best(backend, cache)).with_blocks(blocks)
    return replace(plan, timed_ms=tuple((item["plan"], item["ms"]) for item in choice["timed_ms"]))


def store_plan(parts: dict, backend, cache, plan: LayoutPlan) -> None:
    """Keep ``plan`` (its ``timed_ms`` set) as this model's choice in ``cache``."""
    blocks = plan.blocks()
    blocks = blocks if isinstance(blocks, int) else [[h, w, block] for (h, w), block in blocks.items()]
    cache.set_layout_choice(backend.key, model_key(parts),
                            {"blocks": blocks, "timed_ms": plan.to_json().get("timed_ms", [])})


def plan_partition(model, backend, plan: LayoutPlan, parts: dict):
    """The partition of ``plan``: one of ``parts`` where it keeps one layout throughout."""
    from .tasks import partition

    blocks = plan.blocks()
    return parts[blocks] if isinstance(blocks, int) else partition(model, backend, layout=blocks)


def choose_plan(parts: dict, best_s) -> LayoutPlan:
    """The plan of least estimated time over the partitions ``parts`` ({block: Partition}; block 0
    among them), ``best_s(workload_key)`` giving a task's best record in seconds or None."""
    convs = _conv_stages(parts[0])
    costs: dict = {}
    for block, partition in parts.items():
        for task in partition.tasks:
            stage = _stage_of(task, convs)
            if stage is None:
                continue
            stage_costs = costs.setdefault(stage, {b: 0.0 for b in parts})
            seconds = best_s(task.workload_key)
            if stage_costs[block] is not None:
                stage_costs[block] = None if seconds is None else stage_costs[block] + seconds * task.weight
    order = list(dict.fromkeys(spatial for _, spatial in convs))
    out_bytes = _stage_outputs(parts[0], convs)
    bandwidth = _bandwidth(parts, best_s)
    blocks = _cheapest(order, costs, out_bytes, bandwidth)
    return LayoutPlan(tuple(Stage(spatial, costs.get(spatial, {b: 0.0 for b in parts}), out_bytes.get(spatial, 0),
                                  block) for spatial, block in zip(order, blocks)), bandwidth)


def _cheapest(order, costs, out_bytes, bandwidth) -> list:
    """Dynamic programming over the stages: the blocks of least total, ties to the smaller block."""
    best = {}  # block of the latest stage -> (total, blocks so far)
    previous = None
    for spatial in order:
        known = {b: c for b, c in costs.get(spatial, {0: 0.0}).items() if c is not None}
        known = known or {0: 0.0}  # no layout measured throughout: NCHW
        step = {}
        for block, cost in sorted(known.items()):
            if not best:
                step[block] = (cost, [block])
                continue
            convert = 2 * out_bytes.get(previous, 0) / bandwidth
            total, path = min(((t + (convert if b != block else 0.0), p) for b, (t, p) in sorted(best.items())),
                              key=lambda item: item[0])
            step[block] = (total + cost, path + [block])
        best, previous = step, spatial
    return min(sorted(best.items()), key=lambda item: item[1][0])[1][1] if best else []


def _conv_stages(partition) -> list:
    """(node index, spatial size written) of every convolution node, in graph order."""
    stages = {}
    for task in partition.tasks:
        spatial = _out_spatial(task.func)
        for node in task.nodes:
            if node.op_type == "Conv" and spatial is not None:
                stages[node.index] = spatial
    return sorted(stages.items())


def _stage_of(task, convs):
    """The stage of the last convolution at or before the task's first node; None before any."""
    if not task.nodes:
        return None
    first = min(node.index for node in task.nodes)
    position = bisect.bisect_right([index for index, _ in convs], first)
    return convs[position - 1][1] if position else None


def _stage_outputs(partition, convs) -> dict:
    """Per stage, the bytes its last task (in graph order) writes."""
    last = {}
    for task in partition.tasks:
        stage = _stage_of(task, convs)
        if stage is not None:
            end = max(node.index for node in task.nodes)
            if stage not in last or end > last[stage][0]:
                last[stage] = (end, _nbytes(task.func.params[-1]))
    return {stage: nbytes for stage, (_, nbytes) in last.items()}


def _bandwidth(parts, best_s) -> float:
    """Bytes moved per second by the measured layout conversions of the blocked partitions."""
    moved = seconds = 0.0
    for block, partition in parts.items():
        for task in partition.tasks if block else ():
            cost = best_s(task.workload_key)
            if "layout_transform" in task.name and cost:
                moved += sum(_nbytes(param) for param in task.func.params)
                seconds += cost
    return moved / seconds if moved and seconds else DEFAULT_BANDWIDTH


def _out_spatial(func):
    shape = list(func.params[-1].ty.shape)
    if len(shape) not in (4, 5):
        return None
    try:
        return int(shape[2]), int(shape[3])
    except TypeError:  # a symbolic size
        return None


def _nbytes(param) -> int:
    import tvm

    dtype = tvm.DataType(str(param.ty.dtype))
    try:
        return math.prod(int(d) for d in param.ty.shape) * ((dtype.bits * dtype.lanes + 7) // 8)
    except TypeError:  # a symbolic size
        return 0
