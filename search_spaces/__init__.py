"""Schedule search spaces for fused TIR PrimFuncs (one Relax/FuseTIR task each).

``space_for(func, target)`` picks the first rule whose structure fits ``func``:

* ``winograd``: the input and output transforms of a Winograd convolution;
* ``tiled_reduction``: one reduction with data reuse (matmul, conv, pooling) plus
  injective producers and an elementwise epilogue;
* ``reduction``: other reductions (softmax, layer norm, mean, sum, max);
* ``elementwise``: only spatial blocks (elementwise, broadcast, layout, concat, pad);
* ``fallback``: anything else; parallelizes the outer loops where legal.

A CUDA target gets the GPU rules of ``search_spaces.cuda`` instead (``CUDA_RULES``),
on TVM's dlight schedules, which bind every loop to blocks and threads.

Each space has ``knobs`` (the finite choices of every knob), a heuristic
``default_config()`` (``default_configs()``: with the configs the heuristic could not
tell from it), ``sample(rng)``, ``mutate(config, rng)``, ``validate(config)``
and ``apply(config) -> tvm.s_tir.Schedule``. Configs are plain JSON values
(``Config.to_json``/``from_json``); a config that does not fit raises
``InvalidConfigError``. The package knows nothing of models, caches or measuring.
"""

from __future__ import annotations

import tvm

from .analysis import analyze
from .config import Config, InvalidConfigError
from .cuda import CUDA_RULES, cuda_space_for
from .elementwise import ElementwiseRule
from .fallback import FallbackRule
from .reduction import ReductionRule
from .space import NotApplicable, SearchSpace
from .tiled_reduction import TiledReductionRule
from .tiling import VectorUnit
from .winograd import WinogradRule

__all__ = ["Config", "InvalidConfigError", "SearchSpace", "space_for", "RULES", "CUDA_RULES", "SPACE_VERSION"]

RULES = ("winograd", "tiled_reduction", "reduction", "elementwise", "fallback")

# What a config means: bump it whenever applying a stored config would give another
# schedule than before (a knob's meaning, a rule's structure, how weights are packed),
# so that records measured under the old meaning are never applied to the new one.
SPACE_VERSION = 2


def num_cores(target: tvm.target.Target) -> int:
    cores = target.attrs.get("num-cores") if target.attrs is not None else None
    return int(cores) if cores is not None else 1


def vector_unit(target: tvm.target.Target) -> VectorUnit:
    """The target CPU's vector registers, from the features LLVM enables for it."""
    from tvm.target import codegen

    features = {str(f) for f in codegen.llvm_get_cpu_features(target)}
    if "avx512f" in features:
        return VectorUnit(lanes=16, registers=32)
    if "avx" in features:
        return VectorUnit(lanes=8, registers=16)
    return VectorUnit(lanes=4, registers=16)


def space_for(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> SearchSpace:
    """The search space of ``func`` under the first rule that fits it; never fails
    on a valid PrimFunc (the ``fallback`` rule takes the rest)."""
    if not isinstance(func, tvm.tirx.PrimFunc):
        raise TypeError(f"space_for needs a tvm.tirx.PrimFunc, got {type(func).__name__}")
    if target.kind.name == "cuda":  # CPU rules would leave loops unbound, which no GPU can run
        return cuda_space_for(func, target)
    info = analyze(func)
    cores = num_cores(target)
    rules = (lambda: WinogradRule(func, info, cores), lambda: TiledReductionRule(func, info, cores, vector_unit(target)),
             lambda: ReductionRule(func, info, cores), lambda: ElementwiseRule(func, info, cores))
    for make_rule in rules:
        try:
            rule = make_rule()
        except NotApplicable:
            continue
        space = SearchSpace(func, target, rule)
        try:
            space.apply(space.default_config())
        except InvalidConfigError:
            continue
        return space
    return SearchSpace(func, target, FallbackRule(func, info, cores))
