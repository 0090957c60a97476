"""Real measurement in worker processes: crashes, hangs and wrong numbers become recorded errors."""

import json
import sys

import cloudpickle
import pytest

import tuner
from benchmarks.models import gemm_model
from tuner.builder import LocalBuilder
from tuner.measure import MeasureSettings, measure
from tuner.messages import Artifact
from tuner.runner import LocalRunner

pytestmark = pytest.mark.slow


def inject_build(tir_json, config_json, target, path, cc=None):
    """A build function for tests: the config's "inject" knob picks a misbehaving kernel."""
    import tvm

    import search_spaces
    from tuner.messages import Artifact
    from tuner.workers import build_candidate

    kind = json.loads(config_json)["knobs"].get("inject")
    if kind is None:
        return build_candidate(tir_json, config_json, target, path)
    if kind == "build_hang":  # a compilation that never ends (LLVM on a huge unrolled body, say)
        import time

        time.sleep(3600)
    func = tvm.ir.load_json(tir_json)
    shapes = [[int(d) for d in p.ty.shape] for p in func.params]
    m, k = shapes[0]
    n = shapes[-1][1]
    misbehave = {"crash": 'T.evaluate(T.call_extern("int32", "abort"))',
                 "hang": 'T.evaluate(T.call_extern("int32", "sleep", 3600))'}.get(kind, "")
    # parsed from text: the function reaches the worker pickled by value, without its source file
    bad = tvm.script.from_source(f"""
@T.prim_func
def bad(X: T.Buffer(({m}, {k}), "float32"), W: T.Buffer(({k}, {n}), "float32"), B: T.Buffer(({n},), "float32"),
        Y: T.Buffer(({m}, {n}), "float32")):
    T.func_attr({{"global_symbol": "main"}})
    for i, j in T.grid({m}, {n}):
        {misbehave}
        Y[i, j] = T.float32(12345.0)
""")
    tvm.compile(tvm.IRModule({"main": bad}), target=tvm.target.Target(target)).export_library(path)
    return Artifact(search_spaces.Config.from_json(config_json), path)


@pytest.fixture(scope="module")
def task():
    backend = tuner.resolve_backend()
    parts = tuner.partition(tuner.load(gemm_model(batch=4, in_features=24, out_features=8)), backend)
    assert len(parts.tasks) == 1
    return parts.tasks[0]


@pytest.fixture(scope="module")
def space(task, backend):
    import search_spaces

    return search_spaces.space_for(task.func, backend.tvm_target())


def _config(space, **inject):
    default = space.default_config()
    return default.replace(**inject) if inject else default


class Roles:
    """A local builder and runner with one set of settings, closed together."""

    def __init__(self, backend, settings=MeasureSettings(), build_fn=None, runner_class=LocalRunner):
        extra = {"build_fn": build_fn} if build_fn else {}
        self.builder = LocalBuilder(backend, settings, **extra)
        self.runner = runner_class(backend, settings)

    def measure(self, task, configs, best_s=None):
        return measure(self.builder, self.runner, task, configs, best_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.builder.close()
        self.runner.close()


def test_errors_are_recorded_and_measuring_goes_on(task, backend, space):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    configs = [_config(space, inject="crash"), _config(space, inject="hang"), _config(space, inject="wrong"),
               _config(space)]
    settings = MeasureSettings(run_timeout_s=5, repeat=2, min_repeat_ms=1, max_flushed_runs=2)
    with Roles(backend, settings, build_fn=inject_build) as roles:
        crash, hang, wrong, good = roles.measure(task, configs)
        again = roles.measure(task, [_config(space)])[0]
    assert crash.error_kind == "crash", crash.error_msg
    assert hang.error_kind == "timeout"
    assert wrong.error_kind == "wrong_result" and "differs" in wrong.error_msg
    # the task's first timing is its best so far: run twice more (MeasureSettings.confirm_runs)
    assert good.ok and len(good.costs_s) == 2 * 3 and all(c > 0 for c in good.costs_s)
    assert again.ok


class ScriptedRuns(LocalRunner):
    """Each timed run returns the next result of ``script``, and its ``check`` flag is kept."""

    def __init__(self, backend, settings, script):
        super().__init__(backend, settings)
        self.script = iter(script)
        self.checks = []

    def _run(self, artifact, io, check):
        self.checks.append(check)
        return next(self.script)


def test_a_timing_near_the_best_is_confirmed_by_more_runs_and_a_failing_one_is_its_result(task, backend, space):
    from tuner.records import MeasureResult

    def ok(*costs):
        return MeasureResult(costs)

    script = [ok(1.0), ok(1.1), ok(0.9),  # the first timing is the best so far: two more runs, all repeats kept
              ok(2.0),  # far from the best (1.0): one run
              ok(1.02), MeasureResult.error("crash", "died"),  # within 3 %: run again, and it crashes
              ok(0.5), ok(0.6), ok(0.4)]  # a new best, confirmed
    settings = MeasureSettings(repeat=1, min_repeat_ms=1, confirm_runs=2, confirm_within=0.03, check_first=1)
    with ScriptedRuns(backend, settings, script) as runner:
        first, far, flaky, new_best = runner.run(task, [Artifact(_config(space))] * 4)
        assert next(runner.script, None) is None
    assert first.costs_s == (1.0, 1.1, 0.9) and far.costs_s == (2.0,)
    assert flaky.error_kind == "crash" and flaky.error_msg == "on running it again: died"
    assert new_best.costs_s == (0.5, 0.6, 0.4)
    assert runner.checks == [True] + [False] * 8  # only the first candidate is checked; runs again never


def test_the_best_known_from_before_is_the_best_so_far_for_confirmations(task, backend, space):
    from tuner.records import MeasureResult

    def ok(*costs):
        return MeasureResult(costs)

    script = [ok(1.0),  # slower than the best known (0.5): one run, though the measurer's first
              ok(0.51), ok(0.5), ok(0.49)]  # within 3 % of it: confirmed
    settings = MeasureSettings(repeat=1, min_repeat_ms=1, confirm_runs=2, confirm_within=0.03, check_first=0)
    with ScriptedRuns(backend, settings, script) as runner:
        slow, near = runner.run(task, [Artifact(_config(space))] * 2, best_s=0.5)
        assert next(runner.script, None) is None
    assert slow.costs_s == (1.0,) and near.costs_s == (0.51, 0.5, 0.49)


def test_a_build_past_its_time_limit_is_a_timeout_and_the_batch_goes_on(task, backend, space):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    settings = MeasureSettings(build_timeout_s=3, build_workers=1, repeat=1, min_repeat_ms=1)
    with Roles(backend, settings, build_fn=inject_build) as roles:
        hung, good = roles.measure(task, [_config(space, inject="build_hang"), _config(space)])
    assert hung.error_kind == "timeout" and "build did not finish" in hung.error_msg
    assert good.ok


def test_the_reference_is_not_held_to_the_build_time_limit(task, backend, space):
    # no candidate compiles in 10 ms, but the task's reference (for the correctness checks) has its own limit
    with Roles(backend, MeasureSettings(build_timeout_s=0.01)) as roles:
        assert roles.runner._references.prepare(task).reference_ok
        (result,) = roles.measure(task, [_config(space)])
    assert result.error_kind == "timeout"


def test_cold_timing_runs_as_often_as_fill_the_budget_within_bounds_and_hot_timing_repeats(task, space):
    hot, cold = tuner.resolve_backend(timing="hot"), tuner.resolve_backend(timing="cold")
    runs = {
        "hot": (hot, MeasureSettings(repeat=2, min_repeat_ms=1, confirm_runs=0)),
        # this kernel takes microseconds: 2 x 1 ms holds hundreds of runs, so the cap decides
        "cold, capped": (cold, MeasureSettings(repeat=2, min_repeat_ms=1, max_flushed_runs=7, confirm_runs=0)),
        # no budget: the floor of ``repeat`` runs decides
        "cold, floor": (cold, MeasureSettings(repeat=3, min_repeat_ms=0, max_flushed_runs=7, confirm_runs=0)),
    }
    counts = {}
    for name, (backend, settings) in runs.items():
        with Roles(backend, settings) as roles:
            (result,) = roles.measure(task, [_config(space)])
        assert result.ok, result.error_msg
        counts[name] = len(result.costs_s)
    assert counts == {"hot": 2, "cold, capped": 7, "cold, floor": 3}


class _RecordingModule:
    """Stands in for a loaded candidate: records what each timer it hands out was asked for."""

    def __init__(self):
        self.timers = []

    def time_evaluator(self, name, device, **options):
        self.timers.append(options)
        runs = options.get("repeat", 1)

        class Results:
            results = [0.001 * (len(self.timers))] * runs

        return lambda *tensors: Results()


@pytest.mark.parametrize("cold", [True, False])
def test_a_candidate_runs_untimed_for_the_warm_up_before_its_timed_runs(cold):
    import tvm

    from tuner.device_timing import check_and_time

    timing = {"cold": cold, "repeat": 3, "min_repeat_ms": 0, "max_flushed_runs": 5, "rtol": 1e-3, "atol": 1e-4}
    module = _RecordingModule()
    costs, _ = check_and_time(module, tvm.cpu(), [], None, {**timing, "warm_up_ms": 40})
    assert module.timers[0] == {"number": 1, "repeat": 1, "min_repeat_ms": 40}
    assert 0.001 not in costs and len(costs) == 3  # the warm-up's own time is not a cost
    # a manifest written before the warm-up existed, or a zero, times without one
    for without in (timing, {**timing, "warm_up_ms": 0}):
        module = _RecordingModule()
        check_and_time(module, tvm.cpu(), [], None, without)
        assert all(options.get("min_repeat_ms") != 40 for options in module.timers)
        assert module.timers[0] != {"number": 1, "repeat": 1, "min_repeat_ms": 40}


def test_bad_measure_settings_are_rejected():
    with pytest.raises(tuner.TunerError, match="timeouts must be positive"):
        MeasureSettings(build_timeout_s=0)
    with pytest.raises(tuner.TunerError, match="reference 0"):
        MeasureSettings(reference_timeout_s=0)
    with pytest.raises(tuner.TunerError, match="repeat"):
        MeasureSettings(repeat=0)
    with pytest.raises(tuner.TunerError, match="confirm_runs"):
        MeasureSettings(confirm_runs=-1)
    with pytest.raises(tuner.TunerError, match="max_flushed_runs"):
        MeasureSettings(max_flushed_runs=0)
    with pytest.raises(tuner.TunerError, match="warm_up_ms"):
        MeasureSettings(warm_up_ms=-1)


def test_invalid_config_is_an_error_not_a_crash(task, backend):
    import search_spaces

    bad = search_spaces.Config.from_dict("no_such_rule", {"x": 1})
    with Roles(backend, MeasureSettings(repeat=1, min_repeat_ms=1)) as roles:
        (result,) = roles.measure(task, [bad])
    assert result.error_kind == "invalid_config" and "no_such_rule" in result.error_msg
