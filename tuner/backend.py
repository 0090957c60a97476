"""The hardware backend: which target code is built for, and the key records are filed under.

A record measured on one backend is never applied on another, so the key holds
everything that changes what the fastest code is: the TVM target, the CPU model,
the ISA features the code generator uses, the core count, the TVM version, the
version of our search spaces (what a stored config means), and how candidates are
timed (what a stored cost means: see ``TIMINGS``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

from .errors import TargetError, error_line

# ISA features that matter to vectorized code. When LLVM's CPU model claims one
# that the running CPU does not report (a hypervisor can hide AVX-512, say), we
# switch it off in the target so the code never uses an illegal instruction.
_CHECKED_FEATURES = (
    "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
    "avx512vl", "avx512cd", "avx512vnni", "avx512bf16", "avx512fp16", "amx-tile",
    "amx-int8", "amx-bf16",
)
# /proc/cpuinfo spells a few flags differently from LLVM.
_CPUINFO_NAMES = {"sse4.2": "sse4_2", "avx512bf16": "avx512_bf16", "avx512vnni": "avx512_vnni",
                  "avx512fp16": "avx512_fp16", "amx-tile": "amx_tile", "amx-int8": "amx_int8",
                  "amx-bf16": "amx_bf16"}

# How candidates are timed. "hot": a run repeats on the same buffers, which stay in the CPU caches.
# "cold": the caches of every argument but the first (the input, which in a model the previous layer
# has just written) are flushed before each timed run, so that the weights come from memory as they
# do in the model. Hot times mispredict in-model times for tasks whose weights pass the caches, and
# can rank configs in the wrong order there (docs/benchmarks.md).
TIMINGS = ("cold", "hot")
DEFAULT_TIMING = "cold"


@dataclass(frozen=True)
class Backend:
    """A canonical description of the hardware that code is tuned for."""

    target: dict = field(hash=False)
    device: str
    features: tuple[str, ...]
    num_cores: int
    tvm_version: str
    space_version: int = 0
    timing: str = "hot"  # a description without it is from before cold timing: its records are hot
    device_key: str | None = None  # the RPC tracker's key of a remote device; None: this machine
    gpu: dict | None = field(default=None, hash=False)  # a GPU target's card, driver and compiler versions
    # Convolutions' activations in NCHW[b]c (``tuner.layout``); 0: NCHW. Not part of the key: it changes
    # which tasks a model has (a blocked convolution is a workload of its own), not what a record means.
    conv_block: int = 0

    def __post_init__(self):
        from .layout import BLOCKS

        if self.timing not in TIMINGS:
            raise TargetError(f"timing {self.timing!r} is not one of {', '.join(TIMINGS)}")
        if self.conv_block not in BLOCKS:
            raise TargetError(f"convolution block {self.conv_block!r} is not one of {', '.join(map(str, BLOCKS))} "
                              f"(0: plain NCHW, -1: chosen per stage)")
        if self.conv_block and self.is_cuda:
            raise TargetError("a blocked convolution layout is for CPU targets: the CUDA rules schedule NCHW")

    def describe(self) -> dict:
        """The plain-JSON description that the key is computed from. Hot timing is left out, so that
        keys from before the choice existed (all hot) stay the same."""
        description = {
            "target": self.target,
            "device": self.device,
            "features": list(self.features),
            "num_cores": self.num_cores,
            "tvm_version": self.tvm_version,
            "space_version": self.space_version,
        }
        if self.timing != "hot":
            description["timing"] = self.timing
        if self.device_key is not None:
            description["device_key"] = self.device_key
        if self.gpu is not None:
            description["gpu"] = self.gpu
        return description

    def to_json(self) -> str:
        return json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Backend":
        data = json.loads(text)
        return cls(target=data["target"], device=data["device"], features=tuple(data["features"]),
                   num_cores=int(data["num_cores"]), tvm_version=data["tvm_version"],
                   space_version=int(data.get("space_version", 0)), timing=data.get("timing", "hot"),
                   device_key=data.get("device_key"), gpu=data.get("gpu"))

    @property
    def key(self) -> str:
        """Readable prefix plus a digest of the whole description, e.g. ``llvm-znver4-2c-1a2b3c4d5e6f``
        or ``cuda-sm_90-1a2b3c4d5e6f``."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:12]
        cpu = self.target.get("mcpu", "generic")
        remote = f"{self.device_key}-" if self.device_key is not None else ""
        if self.is_cuda:
            return f"cuda-{self.target.get('arch')}-{remote}{digest}"
        return f"{self.target.get('kind', 'llvm')}-{cpu}-{self.num_cores}c-{remote}{digest}"

    def tvm_target(self):
        import tvm

        return tvm.target.Target(self.target)

    @property
    def is_cuda(self) -> bool:
        return self.target.get("kind") == "cuda"

    @property
    def foreign(self) -> bool:
        """Whether the code is for another architecture than this machine's (it cannot run here)."""
        return is_foreign(self.target)

    def __str__(self) -> str:
        where = f"device {self.device_key!r}: " if self.device_key is not None else ""
        if self.is_cuda:
            return f"{self.key} ({where}{self.device}, compute capability {self.gpu['compute_capability']})"
        return f"{self.key} ({where}{self.device}, {self.num_cores} cores, {self.timing} timing)"


def host_cpu_model() -> str:
    """The CPU's marketing name, e.g. 'AMD EPYC 9R14', or the machine type when unknown."""
    from .device_timing import cpu_model

    return cpu_model()


def _host_cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def host_core_count() -> int:
    """Physical cores available to this process (what a thread pool should use)."""
    import psutil

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    physical = psutil.cpu_count(logical=False) or allowed
    return max(1, min(allowed, physical))


def _hidden_features(mcpu_features: set[str]) -> list[str]:
    flags = _host_cpu_flags()
    if flags is None:
        return []
    return [f for f in _CHECKED_FEATURES
            if f in mcpu_features and _CPUINFO_NAMES.get(f, f) not in flags]


def host_target() -> dict:
    """An LLVM target for this machine: its ``mcpu``, its core count, and hidden features switched off."""
    import tvm
    from tvm.target import codegen

    mcpu = codegen.llvm_get_system_cpu()
    target = {"kind": "llvm", "mcpu": mcpu, "num-cores": host_core_count()}
    hidden = _hidden_features(set(codegen.llvm_get_cpu_features(tvm.target.Target(target))))
    if hidden:
        target["mattr"] = [f"-{f}" for f in hidden]
    return target


def is_foreign(target: dict) -> bool:
    """Whether ``target``'s triple names another architecture than this machine's."""
    from tvm.target import codegen

    triple = target.get("mtriple")
    return bool(triple) and triple_arch(str(triple)) != triple_arch(codegen.llvm_get_system_triple())


def triple_arch(triple: str) -> str:
    arch = triple.split("-", 1)[0]
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(arch, arch)


def parse_target(spec) -> dict:
    if isinstance(spec, dict):
        return dict(spec)
    text = str(spec).strip()
    if not text.startswith(("{", "[")):
        raise TargetError(
            f"target {text!r} is not understood: use 'host' or a JSON dict such as "
            '\'{"kind": "llvm", "mcpu": "znver4", "num-cores": 2}\''
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TargetError(f"target is not valid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(data, dict):
        raise TargetError("target JSON must be an object such as {\"kind\": \"llvm\", ...}")
    return data


def _canonical(target) -> dict:
    """Round-trip through TVM so equivalent spellings give the same dict."""
    exported = dict(target.export())
    exported.pop("tag", None)
    exported.pop("keys", None)
    return json.loads(json.dumps(exported, sort_keys=True, default=_json_default))


def _json_default(value):
    if hasattr(value, "export"):
        return value.export()
    if isinstance(value, (list, tuple)) or type(value).__name__ in ("Array", "List"):
        return list(value)
    return str(value)


def resolve_backend(spec="host", device: str | None = None, timing: str = DEFAULT_TIMING,
                    device_key: str | None = None, conv_block: int = 0) -> Backend:
    """A Backend from ``'host'`` (detect this machine), a target dict, or its JSON text.

    ``device`` names the CPU the code runs on; it defaults to this machine's CPU for a
    target of this machine's architecture, which is right for local measurement.
    ``timing``: one of ``TIMINGS``. ``device_key``: the tracker key of a remote device
    (``tuner.remote``), whose records are filed apart from this machine's. ``conv_block``: the
    convolutions' activation layout, NCHW[b]c (``tuner.layout``; 0, the default: NCHW).
    """
    import tvm
    from tvm.target import codegen

    import search_spaces

    target_dict = host_target() if spec in (None, "host") else parse_target(spec)
    if target_dict.get("kind") == "cuda":
        from .cuda_backend import resolve_cuda_backend

        backend = resolve_cuda_backend(target_dict, device, timing, device_key)
        return dataclasses.replace(backend, conv_block=conv_block) if conv_block else backend
    if target_dict.get("kind") != "llvm":
        raise TargetError(f"target kind {target_dict.get('kind')!r} is not supported: use 'llvm' (CPU) or "
                          f"'cuda' (NVIDIA GPU)")
    if "num-cores" not in target_dict:
        if is_foreign(target_dict):
            raise TargetError(f"target {json.dumps(target_dict)} is for another machine: give its core count "
                              f"as \"num-cores\"")
        target_dict["num-cores"] = host_core_count()
    mcpu = target_dict.get("mcpu")
    triple = target_dict.get("mtriple") or codegen.llvm_get_system_triple()
    if mcpu is not None and not codegen.llvm_is_valid_cpu(str(mcpu), triple):
        raise TargetError(f"target mcpu {mcpu!r} is not a CPU that LLVM knows for {triple}")
    try:
        target = tvm.target.Target(target_dict)
    except Exception as err:  # TVM raises ValueError/TVMError with a multi-line text
        raise TargetError(f"target {json.dumps(target_dict)} is rejected by TVM: {error_line(err)}") from None
    features = tuple(sorted(str(f) for f in codegen.llvm_get_cpu_features(target)))
    if device is None:
        device = "unknown" if device_key is not None or is_foreign(target_dict) else host_cpu_model()
    return Backend(
        target=_canonical(target),
        device=device,
        features=features,
        num_cores=int(target_dict["num-cores"]),
        tvm_version=tvm.__version__,
        space_version=search_spaces.SPACE_VERSION,
        timing=timing,
        device_key=device_key,
        conv_block=conv_block,
    )
