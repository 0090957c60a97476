"""Time exported candidates on this machine's device; TVM's runtime and numpy are all it needs.

    python measure.py [FOLDER] [--timeout SECONDS]

``tuner tune ... --export-candidates FOLDER`` wrote FOLDER on the machine that tunes: the
candidates' libraries, a manifest, the expected outputs, this script and ``device_timing.py``.
Here, on the device (its first GPU for a CUDA target, its CPU otherwise), every candidate is
checked against the expected outputs and timed; the results go to FOLDER/results.json, which
``tuner cache import FOLDER`` stores on the tuning machine. Each candidate runs in a worker
process: one that crashes or hangs is recorded as such and the next goes on in a new worker. The
results are written after every candidate, so a run stopped half-way keeps them (they can be
imported as they are): run the same command again to go on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import subprocess
import sys
import tempfile
import time

MANIFEST = "manifest.json"
RESULTS = "results.json"
RESULTS_FORMAT = "tuner-offline-results"
EXIT_NO_DEVICE = 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a candidate may run (default 60)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with open(os.path.join(args.folder, MANIFEST)) as file:
        manifest = json.load(file)
    if args.worker:
        return _worker(args.folder, manifest)
    device = describe_device(manifest)
    if isinstance(device, str):
        print(f"measure.py: {device}", file=sys.stderr)
        return EXIT_NO_DEVICE
    return _measure_all(args.folder, manifest, device, args.timeout)


def describe_device(manifest: dict) -> dict | str:
    """What this machine's device is, for the record's backend; or why the candidates cannot run here."""
    _use_threads(manifest)
    import tvm
    from device_timing import cpu_model, cuda_version, load_cuda_runtime

    if not manifest["backend"]["target"].get("kind") == "cuda":
        return {"kind": "cpu", "model": cpu_model(), "machine": platform.machine()}

    reason = load_cuda_runtime()
    device = tvm.cuda(0)
    if reason is not None or not device.exist:
        return (f"the candidates are for a CUDA GPU ({manifest['backend']['target'].get('arch')}) and this "
                f"machine has none that TVM can use ({reason or 'no CUDA device found'})")
    capability = str(device.compute_version)
    wanted = str(manifest["backend"]["gpu"]["compute_capability"])
    if capability != wanted.rstrip("abcdefghijklmnopqrstuvwxyz"):
        return f"the candidates are for compute capability {wanted} and this GPU has {capability}"
    return {"kind": "cuda", "model": str(device.device_name), "compute_capability": capability,
            "driver_version": cuda_version(device.driver_version), "machine": platform.machine(),
            "max_threads_per_block": int(device.max_threads_per_block),
            "max_shared_memory_per_block": int(device.max_shared_memory_per_block)}


def _measure_all(folder: str, manifest: dict, device: dict, timeout_s: float) -> int:
    results = _load_results(folder, manifest, device)
    pending = [key for key in _candidate_keys(manifest) if key not in results["results"]]
    print(f"{len(pending)} candidates to time on {device['model']}", flush=True)
    started = time.perf_counter()

    def record(key: str, result: dict) -> None:  # saved at once: a run stopped half-way keeps it
        results["results"][key] = result
        pending.remove(key)
        _save_results(folder, results)

    while pending:
        _run_worker(folder, list(pending), timeout_s, record)
        print(f"{len(results['results'])} timed, {len(pending)} left ({time.perf_counter() - started:.0f} s)",
              flush=True)
    print(f"wrote {os.path.join(folder, RESULTS)}: store it with 'tuner cache import {folder}'")
    return 0


def _candidate_keys(manifest: dict) -> list[str]:
    return [f"{task['index']}/{number}" for task in manifest["tasks"]
            for number, candidate in enumerate(task["candidates"]) if "file" in candidate]


def _load_results(folder: str, manifest: dict, device: dict) -> dict:
    """The results of an earlier run on this device of the same export, to go on from; else none."""
    path = os.path.join(folder, RESULTS)
    if os.path.exists(path):
        with open(path) as file:
            earlier = json.load(file)
        if earlier.get("export_id") == manifest["export_id"] and earlier.get("device") == device:
            return earlier
    return {"format": RESULTS_FORMAT, "version": 1, "export_id": manifest["export_id"], "device": device,
            "results": {}}


def _save_results(folder: str, results: dict) -> None:
    path = os.path.join(folder, RESULTS)
    with open(path + ".tmp", "w") as file:
        json.dump(results, file, indent=1)
    os.replace(path + ".tmp", path)  # a run killed while writing leaves the last whole file


def _run_worker(folder: str, keys: list[str], timeout_s: float, record) -> None:
    """Time ``keys`` in one worker process until it ends, passing each result to ``record(key,
    result)``; a candidate that crashes it or runs past ``timeout_s`` is recorded as such (and the
    caller starts a new worker for the rest)."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: TVM's log cannot fill it up and block
        process = subprocess.Popen([sys.executable, os.path.abspath(__file__), folder, "--worker"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        process.stdin.write(json.dumps(keys).encode())
        process.stdin.close()
        _follow(process, stderr, timeout_s, record)


def _follow(process, stderr, timeout_s: float, record) -> None:
    current, timed = None, 0
    for message in _messages(process, timeout_s):
        if message is None:  # nothing came for timeout_s
            process.kill()
            process.wait()
            if current is None:
                raise SystemExit(f"measure.py: the measuring process did not start within {timeout_s:.0f} s")
            record(current, _error("timeout", f"ran longer than {timeout_s:.0f} s"))
            return
        if "start" in message:
            current = message["start"]
        else:
            record(current, message)
            current, timed = None, timed + 1
    status = process.wait()
    stderr.seek(0)
    lines = stderr.read().strip().splitlines()
    if current is not None:  # the worker died on this candidate
        record(current, _error("crash", f"the process ended (status {status}) while running it: "
                                        f"{lines[-1] if lines else 'no message'}"))
    elif status != 0 and not timed:
        raise SystemExit(f"measure.py: the measuring process failed: {lines[-1] if lines else status}")


def _messages(process, timeout_s: float):
    """The worker's JSON lines as they come, None when none came for ``timeout_s``; read from the raw
    pipe, since a buffered reader could hold a line the selector no longer sees waiting."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    pending = b""
    while True:
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield json.loads(line)
        if not selector.select(timeout=timeout_s):
            yield None
            return
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            return
        pending += chunk


def _worker(folder: str, manifest: dict) -> int:
    """Time the candidates whose keys come on stdin, one JSON line per event on stdout."""
    _use_threads(manifest)
    import numpy as np
    import tvm

    from device_timing import load_cuda_runtime, register_cuda_compiler

    cuda = manifest["backend"]["target"].get("kind") == "cuda"
    if cuda:  # the kernels travel as CUDA C++, compiled by NVRTC as each library is loaded
        load_cuda_runtime()
        register_cuda_compiler(str(manifest["backend"]["target"]["arch"]))
    device = tvm.cuda(0) if cuda else tvm.cpu()
    tasks = {str(task["index"]): task for task in manifest["tasks"]}
    for key in json.loads(sys.stdin.read()):
        task_index, number = key.split("/")
        task = tasks[task_index]
        print(json.dumps({"start": key}), flush=True)
        result = _time_candidate(folder, manifest, task, task["candidates"][int(number)], device, np, tvm)
        print(json.dumps(result), flush=True)
    return 0


def _time_candidate(folder, manifest, task, candidate, device, np, tvm) -> dict:
    from device_timing import check_and_time, prepacked, random_arrays

    try:
        module = tvm.runtime.load_module(os.path.join(folder, candidate["file"]))
        arrays = random_arrays([(arg["shape"], arg["dtype"]) for arg in task["args"]], task["seed"])
        outputs = range(len(arrays) - task["num_outputs"], len(arrays))
        for index in outputs:
            arrays[index] = np.zeros_like(arrays[index])
        tensors = [tvm.runtime.tensor(array, device) for array in arrays]
        prepack = candidate.get("prepack")
        if prepack:
            tensors = prepacked(module, tensors, prepack["indices"], prepack["packed"], device)
        checked = _inputs_match(task, arrays)
        expected = {index: np.load(os.path.join(folder, task["expected"][str(index)])) for index in outputs} \
            if checked else None
        costs, mismatch = check_and_time(module, device, tensors, expected, manifest["timing"])
        if mismatch:
            return _error("wrong_result", mismatch)
    except (RuntimeError, ValueError, OSError) as err:  # how TVM reports a failed load or run
        lines = str(err).strip().splitlines()
        return _error("run", f"{type(err).__name__}: {lines[-1] if lines else ''}")
    return {"costs_s": costs, "checked": checked}


def _inputs_match(task: dict, arrays) -> bool:
    """Whether this numpy made the same inputs from the seed as the tuning machine's (whose outputs
    are the expected ones): a sum per input, recorded at export."""
    if not task.get("expected"):
        return False
    import math

    return all(math.isclose(float(arrays[int(index)].sum(dtype="float64")), total, rel_tol=1e-9, abs_tol=1e-9)
               for index, total in task["input_sums"].items())


def _error(kind: str, message: str) -> dict:
    return {"error_kind": kind, "error_msg": message[:500]}


def _use_threads(manifest: dict) -> None:
    """TVM reads its thread count once, when its pool starts: set it before anything runs."""
    os.environ.setdefault("TVM_NUM_THREADS", str(manifest["timing"]["num_threads"]))


if __name__ == "__main__":
    sys.exit(main())
