import json

import pytest

import tuner
from tuner.backend import Backend, host_cpu_model, resolve_backend


def test_host_backend_describes_this_machine(backend):
    from tvm.target import codegen

    assert backend.target["kind"] == "llvm"
    assert backend.target["mcpu"] == codegen.llvm_get_system_cpu()
    assert backend.num_cores == backend.target["num-cores"] >= 1
    assert backend.device == host_cpu_model()
    assert "sse2" in backend.features or "neon" in backend.features
    assert backend.tvm_version.startswith("0.27")


def test_key_is_canonical_and_stable(backend):
    same = resolve_backend(json.dumps(backend.target))
    assert same.key == backend.key
    assert Backend.from_json(backend.to_json()) == backend
    assert backend.key.startswith(f"llvm-{backend.target['mcpu']}-{backend.num_cores}c-")


def test_key_changes_with_what_matters(backend):
    fewer_cores = resolve_backend({**backend.target, "num-cores": backend.num_cores + 1})
    other_cpu = resolve_backend({"kind": "llvm", "mcpu": "skylake", "num-cores": backend.num_cores})
    assert len({backend.key, fewer_cores.key, other_cpu.key}) == 3
    assert "avx512f" not in other_cpu.features


def test_key_changes_with_the_meaning_of_configs(backend):
    import dataclasses

    import search_spaces

    assert backend.space_version == search_spaces.SPACE_VERSION
    older = dataclasses.replace(backend, space_version=backend.space_version - 1)
    assert older.key != backend.key and Backend.from_json(older.to_json()) == older


def test_key_changes_with_how_costs_are_timed(backend):
    from tuner.backend import DEFAULT_TIMING, TIMINGS

    assert backend.timing == DEFAULT_TIMING and set(TIMINGS) == {"cold", "hot"}
    hot, cold = resolve_backend(timing="hot"), resolve_backend(timing="cold")
    assert hot.key != cold.key and Backend.from_json(cold.to_json()) == cold
    # a description stored before timing was a choice has none: its records are hot, under the same key
    old = {key: value for key, value in cold.describe().items() if key != "timing"}
    assert "timing" not in hot.describe() and old == hot.describe()
    assert Backend.from_json(json.dumps(old)).key == hot.key
    with pytest.raises(tuner.TargetError, match="timing 'warm' is not one of cold, hot"):
        resolve_backend(timing="warm")


@pytest.mark.parametrize("spec, fragment", [
    ("llvm -mcpu=znver4", "JSON dict"),
    ("{not json", "not valid JSON"),
    ('["llvm"]', "must be an object"),
    ('{"kind": "rocm"}', "not supported"),
    ('{"kind": "llvm", "mcpu": "nosuchcpu"}', "nosuchcpu"),
])
def test_bad_targets(spec, fragment):
    with pytest.raises(tuner.TargetError, match=fragment):
        resolve_backend(spec)


def test_a_remote_device_and_a_foreign_target_have_keys_of_their_own(backend):
    from tuner.toolchain import find_compiler

    device = resolve_backend(backend.target, device_key="rpi5", device="cortex-a76")
    assert "-rpi5-" in device.key and device.key != backend.key and "device_key" not in backend.describe()
    assert Backend.from_json(device.to_json()) == device and device.describe()["device_key"] == "rpi5"
    arm = resolve_backend({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "num-cores": 4})
    assert arm.foreign and not backend.foreign and arm.device == "unknown"  # not this machine's CPU
    assert "neon" in arm.features and find_compiler(backend.target) is None  # this machine: TVM's default
    with pytest.raises(tuner.TargetError, match='for another machine: give its core count as "num-cores"'):
        resolve_backend({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76"})
    with pytest.raises(tuner.TargetError, match="compiler 'no-such-cc' .* is not an executable"):
        find_compiler(arm.target, "no-such-cc")
