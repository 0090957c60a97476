"""Offline devices: candidates exported here, timed by the standalone script, imported, a next round."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from benchmarks import models as bm
from tuner.cache import Cache
from tuner.errors import CacheError
from tuner.offline import device_backend

pytestmark = pytest.mark.slow

CUDA_SM90 = '{"kind": "cuda", "arch": "sm_90"}'


@pytest.fixture
def cnn(tmp_path):
    path = tmp_path / "cnn.onnx"
    onnx.save(bm.small_cnn_model(channels=8, size=12), path)
    return path


def _measure(folder, *args):
    """Run the exported script as a device would: by its path, with nothing of this repository imported."""
    return subprocess.run([sys.executable, str(folder / "measure.py"), str(folder), *args], capture_output=True,
                          text=True, timeout=600, cwd=folder)


def _configs(folder) -> set:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {json.dumps(c["config"], sort_keys=True) for task in manifest["tasks"] for c in task["candidates"]}


def test_two_offline_rounds_on_a_cpu_device_then_a_build_from_them(tmp_path, cnn, cli):
    cache = tmp_path / "cache.sqlite"
    first = tmp_path / "round1"
    exported = cli("tune", cnn, "--cache", cache, "--device-key", "box", "--export-candidates", first,
                       "--batch-size", "2")
    assert exported.returncode == 0, exported.stderr
    assert f"tuner cache import {first}" in exported.stdout
    manifest = json.loads((first / "manifest.json").read_text())
    files = [c["file"] for task in manifest["tasks"] for c in task["candidates"] if "file" in c]
    assert len(manifest["tasks"]) == 4 and len(files) >= 5
    # a wrong expected output is caught on the device: that candidate's task has only wrong results
    wrong = manifest["tasks"][0]
    (position, name), = wrong["expected"].items()
    np.save(first / name, np.load(first / name) + 1.0)

    timed = _measure(first)
    assert timed.returncode == 0, timed.stderr
    results = json.loads((first / "results.json").read_text())
    assert results["device"]["kind"] == "cpu" and len(results["results"]) == len(files)
    for key, result in results["results"].items():
        if key.startswith(f"{wrong['index']}/"):
            assert result["error_kind"] == "wrong_result"
        else:
            assert result["checked"] and min(result["costs_s"]) > 0
    again = _measure(first)  # everything is timed: a second run has nothing left to do
    assert again.returncode == 0 and "0 candidates to time" in again.stdout

    imported = cli("cache", "import", first, "--cache", cache)
    assert imported.returncode == 0, imported.stderr
    assert f"stored {len(files)} records under llvm-" in imported.stdout
    key = imported.stdout.split(" under ")[1].split()[0]
    assert "-box-" in key
    with Cache(cache) as stored:
        assert stored.count(backend_key=key) == len(files)
        assert json.loads(stored.backend(key))["device"] == results["device"]["model"]
    repeated = cli("cache", "import", first, "--cache", cache)
    assert f"stored 0 records under {key} ({len(files)} already there" in repeated.stdout

    second = tmp_path / "round2"
    exported = cli("tune", cnn, "--cache", cache, "--device-key", "box", "--export-candidates", second,
                       "--batch-size", "2")
    assert exported.returncode == 0, exported.stderr
    assert json.loads((second / "manifest.json").read_text())["backend"]["device"] == results["device"]["model"]
    assert _configs(second) and not _configs(second) & _configs(first)  # only configs not timed before

    built = cli("build", cnn, "--cache", cache, "--device-key", "box", "-o", tmp_path / "cnn.so")
    assert built.returncode == 0, built.stderr
    assert f"for {key}" in built.stdout and "3/4 tasks had a tuning record" in built.stdout


def test_cuda_candidates_build_here_and_the_script_stops_without_a_gpu(tmp_path, cnn, cli):
    from tuner.cuda import detect_gpu

    folder = tmp_path / "gpu"
    cache = tmp_path / "cache.sqlite"
    exported = cli("tune", cnn, "--target", CUDA_SM90, "--cache", cache, "--device-key", "h200",
                       "--export-candidates", folder, "--batch-size", "2")
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["backend"]["gpu"]["compute_capability"] == "9.0"
    assert all(task["expected"] for task in manifest["tasks"])  # expected outputs from this CPU
    libraries = [folder / c["file"] for task in manifest["tasks"] for c in task["candidates"] if "file" in c]
    # built without a GPU, a library carries its kernels as CUDA C++; on the device, with TVM's runtime
    # alone, the exported helper has NVRTC compile them for sm_90 as the library is loaded
    data = libraries[0].read_bytes()
    start = data.index(b"#ifdef __CUDACC_RTC__")
    (folder / "kernels.cu").write_bytes(data[start:data.index(b"\0", start)])
    compiled = subprocess.run(
        [sys.executable, "-c", "import tvm_ffi, device_timing; device_timing.register_cuda_compiler('sm_90'); "
         "cubin = tvm_ffi.get_global_func('tvm_callback_cuda_compile')(open('kernels.cu').read()); "
         "print(bytes(cubin[:4]))"], capture_output=True, text=True, cwd=folder,
        env={**os.environ, "TVM_USE_RUNTIME_LIB": "1"}, timeout=300)
    assert compiled.returncode == 0 and "\\x7fELF" in compiled.stdout, compiled.stderr
    if detect_gpu() is not None:
        return  # the script would time them: tests/test_cuda.py times on a GPU
    timed = _measure(folder)
    assert timed.returncode == 2 and "this machine has none" in timed.stderr and "sm_90" in timed.stderr
    assert not (folder / "results.json").exists()
    missing = cli("cache", "import", folder, "--cache", cache)
    assert missing.returncode == 2 and "measure.py' on the device first" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_export_needs_a_device_key_and_a_new_folder(tmp_path, cnn, capsys):
    from tuner.cli import main

    assert main(["tune", str(cnn), "--cache", str(tmp_path / "c.sqlite"), "--export-candidates",
                 str(tmp_path / "x")]) == 2
    assert "--export-candidates needs --device-key NAME" in capsys.readouterr().err
    folder = tmp_path / "used"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    assert main(["tune", str(cnn), "--cache", str(tmp_path / "c.sqlite"), "--device-key", "box",
                 "--export-candidates", str(folder)]) == 2
    assert "already holds exported candidates" in capsys.readouterr().err
    assert (folder / "manifest.json").read_text() == "{}"


def test_results_of_another_gpu_are_refused():
    described = {"target": {"kind": "cuda", "arch": "sm_90"}, "device": "unknown", "features": [], "num_cores": 1,
                 "tvm_version": "0", "space_version": 1, "timing": "cold", "device_key": "h200",
                 "gpu": {"model": "unknown", "compute_capability": "9.0"}}
    h200 = {"kind": "cuda", "model": "NVIDIA H200", "compute_capability": "9.0", "driver_version": "13.0"}
    backend = device_backend(described, h200)
    assert backend.device == "NVIDIA H200" and backend.gpu["driver_version"] == "13.0"
    assert backend.key.startswith("cuda-sm_90-h200-")
    assert device_backend(backend.describe(), h200) == backend  # a later round's import: the same key
    with pytest.raises(CacheError, match="compute capability 8.0"):
        device_backend(described, {**h200, "compute_capability": "8.0"})


def test_each_result_is_passed_on_as_it_comes_and_a_hang_is_a_timeout(tmp_path):
    """The script saves after every candidate (so a run stopped from outside keeps what it timed):
    here a worker that times one candidate and hangs on the next gives both results, the first
    before the hang ends."""
    import tempfile
    import time

    from tuner import offline_measure

    worker = ("import json, time; print(json.dumps({'start': '0/0'})); print(json.dumps({'costs_s': [1.0]}));"
              "print(json.dumps({'start': '0/1'}), flush=True); time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE)
    seen = []
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:
        offline_measure._follow(process, stderr, 3.0, lambda key, result: seen.append((key, result,
                                                                                     time.perf_counter())))
    assert [key for key, _, _ in seen] == ["0/0", "0/1"]
    assert seen[0][1] == {"costs_s": [1.0]} and seen[1][1]["error_kind"] == "timeout"
    assert seen[0][2] - started < 2.5 <= seen[1][2] - started
    assert process.poll() is not None  # the hanging worker was killed
