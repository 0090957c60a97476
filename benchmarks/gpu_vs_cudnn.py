"""Our CUDA builds against PyTorch with cuDNN on an NVIDIA GPU, on the same weights and inputs.

Two halves, because the GPU machine may have no compiler and no network:

    python -m benchmarks.gpu_vs_cudnn prepare build/gpu/bench [--cache C --device-key K] [--arch sm_90]
    python -m benchmarks.gpu_vs_cudnn run build/gpu/bench [--json build/gpu/result.json]

``prepare`` (here, no GPU needed) writes per case and batch the ONNX graph in the plain form that
PyTorch runs (``benchmarks.onnx_torch``; weights and inputs are made from seeds on both machines),
and our builds through NVRTC: untuned (default schedules) and, with ``--cache`` and
``--device-key``, tuned from that device's records (offline rounds: ``tuner tune
--export-candidates``, ``measure.py`` on the GPU, ``tuner cache import``). ``run`` (on the GPU:
TVM's runtime, numpy, onnx and PyTorch's CUDA build) times, in alternation, each build with TVM's
time evaluator and PyTorch with ``cudnn.benchmark`` in fp32 (TF32 off) and with TF32 on, each also
replayed from a CUDA graph (no Python launch cost per op), and prints the medians, the ratios and
the largest output difference relative to the output's largest magnitude (against fp32 PyTorch).
Without a GPU it stops, after checking the prepared folder, with one line saying so (exit status 2).

Cases: a 3x3 conv 64->64 on 56x56, a 1x1 conv 64->256 on 56x56, a 1024x1024x1024 matmul (its rows
times the batch), ResNet-18 at 224x224 and the transformer encoder of ``benchmarks/models.py``; batch
1 and 16.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.onnx_torch import graph_json

CASES = ("conv3x3", "conv1x1", "matmul", "resnet18", "transformer")
BATCHES = (1, 16)
EXIT_NO_GPU = 2


def case_model(case: str, batch: int):
    from benchmarks import models as bm

    builders = {
        "conv3x3": lambda: bm.conv_model(batch=batch, in_channels=64, out_channels=64, size=56, kernel=3, relu=False),
        "conv1x1": lambda: bm.conv_model(batch=batch, in_channels=64, out_channels=256, size=56, kernel=1,
                                         relu=False),
        "matmul": lambda: bm.matmul_model(m=1024 * batch, k=1024, n=1024),
        "resnet18": lambda: bm.resnet18_model(batch=batch),
        "transformer": lambda: bm.transformer_encoder_model(batch=batch),
    }
    return builders[case]()


def prepare(folder: Path, cases, batches, arch: str, cache_path: str | None, device_key: str | None) -> dict:
    """Write the cases, their inputs and our builds into ``folder``; returns the manifest."""
    import tempfile

    import onnx

    import tuner

    target = json.dumps({"kind": "cuda", "arch": arch})
    untuned = tuner.resolve_backend(target)
    entries = []
    with tuner.Cache(cache_path) if cache_path else _NoCache() as cache:
        tuned = _tuned_backend(cache, target, device_key) if cache_path and device_key else None
        for case in cases:
            for batch in batches:
                name = f"{case}_b{batch}"
                (folder / name).mkdir(parents=True, exist_ok=True)
                onnx_model = case_model(case, batch)
                graph, weights = graph_json(onnx_model)
                graph["input_shapes"] = [[d.dim_value for d in value.type.tensor_type.shape.dim]
                                         for value in onnx_model.graph.input if value.name in graph["inputs"]]
                graph["weights_sha256"] = weights_digest(weights)
                (folder / name / "graph.json").write_text(json.dumps(graph))
                with tempfile.TemporaryDirectory() as scratch:
                    onnx.save(onnx_model, f"{scratch}/model.onnx")
                    model = tuner.load(f"{scratch}/model.onnx")
                builds = {"untuned": _export(tuner.build(model, untuned), folder / name / "untuned.so", folder)}
                if tuned is not None:
                    built = tuner.build(model, tuned, cache)
                    builds["tuned"] = _export(built, folder / name / "tuned.so", folder)
                entries.append({"name": name, "case": case, "batch": batch, "builds": builds})
                print(f"prepared {name}: {', '.join(builds)}", flush=True)
    manifest = {"arch": arch, "untuned_backend": untuned.key, "tuned_backend": tuned.key if tuned else None,
                "cases": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    # the libraries hold the weights too: ResNet-18's 45 MB twice per build and batch
    print(f"{folder} holds {size / 2**20:.0f} MiB")
    return manifest


def weights_digest(weights: dict[str, np.ndarray]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode() + np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()


def case_weights(entry: dict, graph: dict) -> dict[str, np.ndarray]:
    """The case's weights made again from its seed (the libraries hold them; carrying them twice
    would not fit the GPU machine's transfer limit), checked against the prepared ones."""
    _, weights = graph_json(case_model(entry["case"], entry["batch"]))
    if weights_digest(weights) != graph["weights_sha256"]:
        raise RuntimeError("this machine's numpy made other weights from the seed than the preparing machine's")
    return weights


def case_inputs(graph: dict) -> list[np.ndarray]:
    """The inputs of a prepared case, made from a seed on both machines (a batch of 16 is large to carry)."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for shape in graph["input_shapes"]]


class _NoCache:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _tuned_backend(cache, target: str, device_key: str):
    from tuner.remote import stored_backend

    return stored_backend(cache, target, device_key, "cold")


def _export(built, path: Path, folder: Path) -> dict:
    built.export(path)
    coverage = built.coverage
    return {"file": str(path.relative_to(folder)), "tasks": coverage.tasks, "tasks_tuned": coverage.tasks_tuned}


def run(folder: Path, repeat: int, json_path: str | None) -> int:
    manifest = json.loads((folder / "manifest.json").read_text())
    missing = [build["file"] for entry in manifest["cases"] for build in entry["builds"].values()
               if not (folder / build["file"]).exists()]
    if missing:
        print(f"gpu_vs_cudnn: {folder} lacks {', '.join(missing)}: run 'prepare' again", file=sys.stderr)
        return EXIT_NO_GPU
    reason = _no_gpu_reason()
    if reason:
        print(f"gpu_vs_cudnn: {len(manifest['cases'])} cases are prepared in {folder}, but timing them needs an "
              f"NVIDIA GPU: {reason}", file=sys.stderr)
        return EXIT_NO_GPU
    rows = [_run_case_or_error(folder, entry, manifest["arch"], repeat) for entry in manifest["cases"]]
    _print_table(rows)
    if json_path:
        Path(json_path).write_text(json.dumps({"arch": manifest["arch"], "rows": rows}, indent=1))
    return 0


def _no_gpu_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


def _device_timing():
    """``tuner/device_timing.py`` loaded by its path: importing ``tuner`` would need its dependencies."""
    path = Path(__file__).resolve().parent.parent / "tuner" / "device_timing.py"
    spec = importlib.util.spec_from_file_location("device_timing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_case_or_error(folder: Path, entry: dict, arch: str, repeat: int) -> dict:
    """A case's row; one that fails (a kernel that does not load, say) is a row with its error, and
    the other cases still run."""
    try:
        return _run_case(folder, entry, arch, repeat)
    except Exception as err:  # noqa: BLE001 - any failure of one case is that case's result
        lines = str(err).strip().splitlines()
        message = f"{type(err).__name__}: {lines[-1] if lines else ''}"[:500]
        print(f"{entry['name']}: {message}", file=sys.stderr, flush=True)
        return {"name": entry["name"], "case": entry["case"], "batch": entry["batch"], "error": message}


def _run_case(folder: Path, entry: dict, arch: str, repeat: int) -> dict:
    import torch
    import tvm
    from tvm.runtime.vm import VirtualMachine

    from benchmarks.onnx_torch import TorchGraph

    timing = _device_timing()
    timing.load_cuda_runtime()
    timing.register_cuda_compiler(arch)
    torch.backends.cudnn.benchmark = True
    device = tvm.cuda(0)
    graph = json.loads((folder / entry["name"] / "graph.json").read_text())
    weights = case_weights(entry, graph)
    inputs = case_inputs(graph)
    torch_graph = TorchGraph(graph, weights, "cuda")
    torch_inputs = [torch.from_numpy(array).cuda() for array in inputs]
    timers, outputs = {}, {}
    for variant, build in entry["builds"].items():
        vm = VirtualMachine(tvm.runtime.load_module(str(folder / build["file"])), device)
        tensors = [tvm.runtime.tensor(array, device) for array in inputs]
        outputs[variant] = _first_output(vm["main"](*tensors))
        vm.set_input("main", *tensors)
        evaluator = vm.time_evaluator("invoke_stateful", device, number=10, repeat=1, min_repeat_ms=50)
        timers[variant] = lambda evaluator=evaluator: float(evaluator("main").results[0])
    with torch.no_grad():
        for precision, tf32 in (("cudnn_fp32", False), ("cudnn_tf32", True)):
            timers[precision] = _torch_timer(torch, torch_graph, torch_inputs, tf32)
            try:
                timers[precision + "_graph"] = _cuda_graph_timer(torch, torch_graph, torch_inputs, tf32)
            except Exception as err:  # noqa: BLE001 - a graph PyTorch cannot capture leaves the plain row
                print(f"{entry['name']}: no CUDA graph for {precision}: {err}", file=sys.stderr, flush=True)
        _set_tf32(torch, False)
        reference = torch_graph(*torch_inputs)[0].float().cpu().numpy()
    times = {name: [] for name in timers}
    for _ in range(repeat):  # in alternation, so that drift touches every side alike
        for name, timer in timers.items():
            times[name].append(timer())
    row = {"name": entry["name"], "case": entry["case"], "batch": entry["batch"],
           **{f"{name}_ms": statistics.median(values) * 1e3 for name, values in times.items()}}
    scale = float(np.abs(reference).max()) or 1.0
    for variant, output in outputs.items():
        row[f"{variant}_rel_diff"] = float(np.abs(output.astype(np.float64) - reference).max() / scale)
        row[f"{variant}_over_fp32"] = row[f"{variant}_ms"] / row["cudnn_fp32_ms"]
        if "cudnn_fp32_graph_ms" in row:
            row[f"{variant}_over_fp32_graph"] = row[f"{variant}_ms"] / row["cudnn_fp32_graph_ms"]
    return row


def _first_output(value) -> np.ndarray:
    while not hasattr(value, "numpy"):
        value = value[0]
    return value.numpy()


def _set_tf32(torch, on: bool) -> None:
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def _torch_timer(torch, graph, inputs, tf32: bool, min_s: float = 0.05):
    """Seconds per call of ``graph`` with TF32 ``tf32``, timed with CUDA events over a batch of calls."""
    _set_tf32(torch, tf32)
    for _ in range(3):  # cudnn.benchmark picks its algorithms on the first calls
        graph(*inputs)
    timer = _event_timer(torch, lambda: graph(*inputs), min_s)

    def timed() -> float:
        _set_tf32(torch, tf32)  # the other rows of the alternation switch it
        return timer()

    return timed


def _cuda_graph_timer(torch, graph, inputs, tf32: bool, min_s: float = 0.05):
    """Like ``_torch_timer``, but PyTorch's calls are captured once in a CUDA graph and replayed: its
    kernels without Python's launch cost per op, which dominates small cases at batch 1."""
    _set_tf32(torch, tf32)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture: cudnn.benchmark picks its algorithms here
        for _ in range(3):
            graph(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    captured = torch.cuda.CUDAGraph()
    with torch.cuda.graph(captured):
        graph(*inputs)
    return _event_timer(torch, captured.replay, min_s)


def _event_timer(torch, call, min_s: float):
    """A timer of ``call``'s seconds per call between two CUDA events, over as many calls as fill ``min_s``."""
    def timed(number: int) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            call()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / number

    timed(1)
    number = max(1, int(min_s / max(timed(1), 1e-7)))
    return lambda: timed(number)


def _print_table(rows) -> None:
    variants = [v for v in ("untuned", "tuned") if any(f"{v}_ms" in row for row in rows)]
    head = f"{'case':<18}" + "".join(f"{v + ' ms':>13}" for v in variants)
    print(head + f"{'cuDNN fp32':>12}{'cuDNN tf32':>12}{'fp32 graph':>12}{'tf32 graph':>12}"
          + "".join(f"{v + '/fp32':>14}" for v in variants) + "".join(f"{v + '/graph':>15}" for v in variants)
          + f"{'rel diff':>10}")
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<18}failed: {row['error']}")
            continue
        line = f"{row['name']:<18}" + "".join(f"{row.get(v + '_ms', float('nan')):>13.3f}" for v in variants)
        line += "".join(f"{row.get(name + '_ms', float('nan')):>12.3f}"
                        for name in ("cudnn_fp32", "cudnn_tf32", "cudnn_fp32_graph", "cudnn_tf32_graph"))
        line += "".join(f"{row.get(v + '_over_fp32', float('nan')):>14.2f}" for v in variants)
        line += "".join(f"{row.get(v + '_over_fp32_graph', float('nan')):>15.2f}" for v in variants)
        print(line + f"{max(row.get(v + '_rel_diff', 0.0) for v in variants):>10.1e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="write the cases and our CUDA builds (no GPU needed)")
    prep.add_argument("folder")
    prep.add_argument("--arch", default="sm_90")
    prep.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    prep.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    prep.add_argument("--cache", help="tuning cache with the GPU's records (with --device-key)")
    prep.add_argument("--device-key", help="the name the GPU's records are filed under")
    timing = commands.add_parser("run", help="time the prepared cases on this machine's GPU")
    timing.add_argument("folder")
    timing.add_argument("--repeat", type=int, default=7)
    timing.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(Path(args.folder), args.cases, args.batches, args.arch, args.cache, args.device_key)
        return 0
    return run(Path(args.folder), args.repeat, args.json)


if __name__ == "__main__":
    sys.exit(main())
