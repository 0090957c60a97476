"""The CUDA target on a machine that may have no GPU: backend keys, GPU search spaces whose schedules
compile to sm_90 code through NVRTC, 'tuner build' for CUDA, and the one-line errors for timing."""

import json

import numpy as np
import onnx
import pytest

import benchmarks.models as bm
import search_spaces
import tuner
from tuner.backend import Backend, resolve_backend
from tuner.cli import main
from tuner.cuda import compile_kernels, detect_gpu, kernel_sources
from tuner.errors import NoDeviceError, TargetError

CUDA_SM90 = '{"kind": "cuda", "arch": "sm_90"}'

NETWORKS = {
    "resnet18": lambda: bm.resnet18_model(size=32, width=8, num_classes=10),
    "mobilenetv2": lambda: bm.mobilenetv2_model(size=32, width_mult=0.25, num_classes=10),
    "transformer": lambda: bm.transformer_encoder_model(seq_len=16, d_model=32, num_heads=2, d_ff=64),
}


@pytest.fixture(scope="module")
def cuda_backend():
    return resolve_backend(CUDA_SM90)


def _compile_to_ptx(funcs: dict, backend) -> str:
    """Build ``funcs`` (name -> scheduled PrimFunc) for the backend's GPU and compile their CUDA
    source through NVRTC, as loading the library on a GPU does; returns the PTX."""
    import tvm

    module = tvm.IRModule({name: func.with_attr("global_symbol", name) for name, func in funcs.items()})
    library = tvm.tirx.build(module, target=backend.tvm_target())
    (source,) = kernel_sources(library)
    ptx = compile_kernels(source, backend.target["arch"], target_format="ptx").decode()
    assert ".target sm_90" in ptx
    return ptx


def test_cuda_backend_key_and_description(cuda_backend):
    import tvm

    assert cuda_backend.key.startswith("cuda-sm_90-")
    described = cuda_backend.describe()
    assert described["gpu"]["compute_capability"] == "9.0"
    assert described["tvm_version"] == tvm.__version__
    assert described["gpu"]["nvrtc_version"].startswith("13.")
    if detect_gpu() is None:
        assert cuda_backend.device == described["gpu"]["model"] == "unknown"
    again = Backend.from_json(cuda_backend.to_json())
    assert again == cuda_backend and again.key == cuda_backend.key
    assert resolve_backend('{"kind": "cuda", "arch": "sm_80"}').key != cuda_backend.key
    assert "gpu" not in resolve_backend("host").describe()


def test_cuda_target_errors_are_one_line():
    with pytest.raises(TargetError, match="sm_XY"):
        resolve_backend('{"kind": "cuda", "arch": "ampere"}')
    with pytest.raises(TargetError, match="'llvm' \\(CPU\\) or 'cuda'"):
        resolve_backend('{"kind": "rocm"}')
    if detect_gpu() is None:
        with pytest.raises(TargetError, match='needs an "arch"'):
            resolve_backend('{"kind": "cuda"}')


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_task_has_a_cuda_schedule_that_nvrtc_compiles(network, cuda_backend):
    model = tuner.load(NETWORKS[network]())
    tasks = tuner.partition(model, cuda_backend).tasks
    target = cuda_backend.tvm_target()
    funcs, rules = {}, set()
    for index, task in enumerate(tasks):
        space = search_spaces.space_for(task.func, target)
        assert space.rule in search_spaces.CUDA_RULES
        rules.add(space.rule)
        funcs[f"task{index}"] = space.apply(space.default_config()).mod["main"]
    ptx = _compile_to_ptx(funcs, cuda_backend)
    assert ptx.count(".entry") >= len(tasks)  # a task may launch more than one kernel
    assert "cuda_matmul" in rules  # convs and matmuls get the tunable rule


def _matmul_space(target):
    model = tuner.load(bm.gemm_model(batch=33, in_features=70, out_features=45))
    (task,) = [t for t in tuner.partition(model, resolve_backend(CUDA_SM90)).tasks if "matmul" in t.name]
    return search_spaces.space_for(task.func, target)


def test_random_matmul_configs_fail_validation_or_compile(cuda_backend):
    space = _matmul_space(cuda_backend.tvm_target())
    assert space.rule == "cuda_matmul" and len(space.knobs) > 1
    rng = np.random.default_rng(0)
    valid, rejected = {}, 0
    for index in range(24):
        values = {name: choices[int(rng.integers(len(choices)))] for name, choices in space.knobs.items()}
        config = search_spaces.Config.from_dict(space.rule, values)
        try:
            scheduled = space.apply(config)
        except search_spaces.InvalidConfigError:
            rejected += 1
            continue
        valid[f"config{index}"] = scheduled.mod["main"]
    assert rejected and len(valid) >= 4
    sampled = space.sample(rng)
    valid["sampled"] = space.apply(sampled).mod["main"]
    valid["mutated"] = space.apply(space.mutate(sampled, rng)).mod["main"]
    assert _compile_to_ptx(valid, cuda_backend).count(".entry") == len(valid)


def test_matmul_configs_beyond_the_gpu_limits_are_rejected(cuda_backend):
    import tvm

    small = _matmul_space(tvm.target.Target({"kind": "cuda", "arch": "sm_90", "max_num_threads": 256}))
    with pytest.raises(search_spaces.InvalidConfigError, match="512 threads per block, the GPU allows 256"):
        small.validate(small.default_config().replace(block_x=32, block_y=16))
    space = _matmul_space(cuda_backend.tvm_target())  # 48 KiB of shared memory per block
    shared = space.default_config().replace(block_x=32, block_y=32, micro_x=8, micro_y=8, micro_k=32)
    with pytest.raises(search_spaces.InvalidConfigError, match="69632 bytes of shared memory per block, the GPU "
                                                                "allows 49152"):
        space.validate(shared)
    assert space.is_valid(shared.replace(shared=False))
    with pytest.raises(search_spaces.InvalidConfigError, match="vector 4 does not divide"):
        space.validate(space.default_config().replace(micro_x=2, vector=4))


def test_the_fallback_rule_tunes_the_threads_per_block_within_the_gpu_limit(cuda_backend):
    import re

    import tvm

    model = tuner.load(NETWORKS["transformer"]())
    funcs = [task.func for task in tuner.partition(model, cuda_backend).tasks]
    (func, *_) = [f for f in funcs if search_spaces.space_for(f, cuda_backend.tvm_target()).rule == "cuda_fallback"]
    space = search_spaces.space_for(func, cuda_backend.tvm_target())
    assert space.knobs == {"threads": (32, 64, 128, 256, 512, 1024)} and space.default_config().knobs == (("threads", 1024),)
    scheduled = {f"threads{t}": space.apply(space.default_config().replace(threads=t)).mod["main"] for t in (64, 512)}
    library = tvm.tirx.build(tvm.IRModule({name: f.with_attr("global_symbol", name) for name, f in scheduled.items()}),
                             target=cuda_backend.tvm_target())
    assert sorted(set(re.findall(r"__launch_bounds__\((\d+)\)", kernel_sources(library)[0]))) == ["512", "64"]
    small = search_spaces.space_for(func, tvm.target.Target({"kind": "cuda", "arch": "sm_90", "max_num_threads": 256}))
    assert max(small.knobs["threads"]) == 256
    with pytest.raises(search_spaces.InvalidConfigError, match="not one of|1024"):
        small.validate(space.default_config())


def test_cuda_target_routes_to_cuda_rules_only(backend):
    model = tuner.load(bm.gemm_model(batch=8, in_features=32, out_features=16))
    func = tuner.partition(model, backend).tasks[0].func
    assert search_spaces.space_for(func, backend.tvm_target()).rule in search_spaces.RULES
    assert search_spaces.space_for(func, resolve_backend(CUDA_SM90).tvm_target()).rule == "cuda_matmul"


def test_cli_build_for_cuda_writes_a_library_with_its_kernels(tmp_path, capsys):
    path = tmp_path / "cnn.onnx"
    onnx.save(bm.small_cnn_model(channels=7, size=13), str(path))
    output = tmp_path / "cnn_cuda.so"
    assert main(["build", str(path), "--target", CUDA_SM90, "-o", str(output),
                 "--cache", str(tmp_path / "cache.sqlite")]) == 0
    assert "for cuda-sm_90-" in capsys.readouterr().out
    metadata = json.loads((tmp_path / "cnn_cuda.so.json").read_text())
    assert metadata["backend"]["target"]["kind"] == "cuda"
    library = output.read_bytes()
    assert library.count(b'extern "C" __global__') >= metadata["coverage"]["tasks"]
    if detect_gpu() is None:
        with pytest.raises(NoDeviceError, match="needs an NVIDIA GPU"):
            tuner.load_module(output)
    else:
        (result,) = tuner.load_module(output).run(np.zeros((1, 3, 13, 13), np.float32))
        assert np.isfinite(result).all()


def test_tuning_a_cuda_target_times_on_the_gpu_or_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "gemm.onnx"
    onnx.save(bm.gemm_model(batch=2, in_features=9, out_features=5), str(path))
    cache_path = tmp_path / "c.sqlite"
    status = main(["tune", str(path), "--target", CUDA_SM90, "--trials", "2", "--cache", str(cache_path), "--quiet"])
    error = capsys.readouterr().err.strip()
    if detect_gpu() is not None:  # the local runner times the candidates on the GPU
        assert status == 0
        with tuner.Cache(cache_path) as cache:
            assert [record.result.ok for record in cache.records()] == [True, True]
        return
    assert status == 2 and "\n" not in error
    assert error.startswith("tuner: error: 'tuner tune' for a CUDA target") and "needs an NVIDIA GPU" in error
    model = tuner.load(str(path))
    with pytest.raises(NoDeviceError, match="needs an NVIDIA GPU"):
        with tuner.Cache(tmp_path / "api.sqlite") as cache:
            tuner.tune(model, resolve_backend(CUDA_SM90), cache)
