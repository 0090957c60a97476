"""The convolution layout chosen per stage (``--conv-layout auto``, ``tuner.layout_plan``)."""

import json

import numpy as np
import onnxruntime as ort
import pytest

import search_spaces
import tuner
from benchmarks.models import GraphBuilder
from tuner.layout_plan import AUTO, choose_plan, model_key, variants
from tuner.records import MeasureResult, Record
from tuner.tune import model_states, narrow_when_measured


def two_stages():
    """Two convolutions writing 16x16 maps, a strided one and a 1x1 writing 8x8 maps."""
    b = GraphBuilder(0)
    x = b.op("Relu", [b.conv("x", 3, 16, 3, name="stem")], name="stem.relu")
    x = b.op("Relu", [b.conv(x, 16, 16, 3, name="a")], name="a.relu")
    x = b.op("Relu", [b.conv(x, 16, 32, 3, stride=2, name="down")], name="down.relu")
    x = b.op("Relu", [b.conv(x, 32, 32, 1, name="b")], name="b.relu")
    return b.make_model("two_stages", {"x": (1, 3, 16, 16)}, x, (1, 32, 8, 8))


@pytest.fixture(scope="module")
def model():
    return tuner.load(two_stages())


@pytest.fixture(scope="module")
def auto():
    return tuner.resolve_backend("host", conv_block=AUTO)


@pytest.fixture(scope="module")
def layouts(model, auto):
    return variants(model, auto)


def _costs(layouts, favour: dict, conversion_s: float = 1e-6) -> dict:
    """Task costs where each stage's tasks take 1 ms in the layout ``favour`` names for it and 2 ms in
    the other; layout conversions take ``conversion_s``."""
    costs = {}
    for block, partition in layouts.items():
        for task in partition.tasks:
            if "layout_transform" in task.name:
                costs[task.workload_key] = conversion_s
                continue
            stage = int(task.func.params[-1].ty.shape[2])
            costs[task.workload_key] = 1e-3 if favour[stage] == block else 2e-3
    return costs


def test_each_stage_takes_the_layout_its_tasks_ran_fastest_in(layouts):
    plan = choose_plan(layouts, _costs(layouts, {16: 0, 8: 16}).get)
    assert [(stage.spatial, stage.block) for stage in plan.stages] == [((16, 16), 0), ((8, 8), 16)]
    assert plan.blocks() == {(16, 16): 0, (8, 8): 16}
    assert "8x8: nchw16c" in plan.describe()
    assert choose_plan(layouts, _costs(layouts, {16: 16, 8: 16}).get).blocks() == 16


def test_a_conversion_dearer_than_the_gain_keeps_one_layout(layouts):
    """Converting between the stages would cost more than the 8x8 stage gains: NCHW throughout; and
    with nothing measured, NCHW too."""
    assert choose_plan(layouts, _costs(layouts, {16: 0, 8: 16}, conversion_s=1.0).get).blocks() == 0
    assert choose_plan(layouts, lambda key: None).blocks() == 0


def _store(cache, backend, layouts, costs) -> None:
    target = backend.tvm_target()
    cache.add_backend(backend)
    for partition in layouts.values():
        for task in partition.tasks:
            cache.add_workload(task)
            config = search_spaces.space_for(task.func, target).default_config()
            cache.add_many([Record(backend.key, task.workload_key, task.name, config.to_json(),
                                   MeasureResult((costs[task.workload_key],)))])


def test_a_build_follows_the_plan_of_the_cache_and_matches_onnxruntime(model, auto, layouts):
    proto = two_stages()
    with tuner.Cache(":memory:") as cache:
        _store(cache, auto, layouts, _costs(layouts, {16: 0, 8: 16}))
        built = tuner.build(model, auto, cache)
    assert built.layout_plan.blocks() == {(16, 16): 0, (8, 8): 16}
    blocked = sorted(s.task_name for s in built.schedules if "NCHWc" in s.task_name)
    assert len(blocked) == 2 and all(s.source == "cache" for s in built.schedules if "NCHWc" in s.task_name)
    assert built.metadata()["conv_layout"]["stages"][1]["layout"] == "nchw16c"
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = built.runner().run(**feeds)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-4 * float(np.abs(expected[0]).max()))


def test_tuning_measures_both_layouts_then_only_the_chosen_plan(layouts, tmp_path, cli):
    """The first batches go to every layout's tasks; then the plan is chosen and only its tasks (the
    conversions it adds among them) are tuned; at the end the candidate plans' builds are timed;
    ``tuner build`` prints the plan so chosen."""
    path = tmp_path / "two_stages.onnx"
    path.write_bytes(two_stages().SerializeToString())
    cache_path = tmp_path / "cache.sqlite"
    tuned = cli("tune", path, "--conv-layout", "auto", "--cache", cache_path, "--trials", 48, "--search", "random",
                "--batch-size", 4, "--quiet", "--json", tmp_path / "tuned.json")
    assert tuned.returncode == 0, tuned.stderr
    report = json.loads((tmp_path / "tuned.json").read_text())
    union = {task.workload_key for partition in layouts.values() for task in partition.tasks}
    plan = report["search"]["conv_layout"]
    assert [stage["spatial"] for stage in plan["stages"]] == [[16, 16], [8, 8]]
    assert {task["workload_key"] for task in report["tasks"]} != union  # narrowed to the plan's tasks
    assert all(task["best_ms"] is not None for task in report["tasks"])
    assert "convolution layout per stage: 16x16: " in tuned.stdout
    assert "chosen by timing whole builds: " in tuned.stdout  # then the builds were timed
    built = cli("build", path, "--conv-layout", "auto", "--cache", cache_path, "-o", tmp_path / "m.so")
    assert built.returncode == 0, built.stderr
    layouts_printed = [f"{s['spatial'][0]}x{s['spatial'][1]}: {s['layout']}" for s in plan["stages"]]
    assert all(text in built.stdout for text in layouts_printed), built.stdout
    assert "chosen by timing whole builds: " in built.stdout  # the build follows the timed choice
    stored = json.loads((tmp_path / "m.so.json").read_text())["conv_layout"]["stages"]
    assert [stage["layout"] for stage in stored] == [stage["layout"] for stage in plan["stages"]]


def test_measured_layouts_narrow_to_the_plan_and_its_new_conversions(model, auto, layouts):
    """What ``tune`` and the offline rounds do once every layout's tasks have a record: the states
    become the plan's tasks, the conversion between its two stages (in neither layout) among them."""
    with tuner.Cache(":memory:") as cache:
        _store(cache, auto, layouts, _costs(layouts, {16: 0, 8: 16}))
        states, found = model_states(model, auto, cache, 4)
        union = {task.workload_key for partition in layouts.values() for task in partition.tasks}
        assert {state.task.workload_key for state in states} == union
        plan = narrow_when_measured(states, model, auto, cache, found, 4)
    assert plan.blocks() == {(16, 16): 0, (8, 8): 16}
    convs = [(int(state.task.func.params[-1].ty.shape[2]), "NCHWc" in state.task.name)
             for state in states if "conv2d" in state.task.name]
    assert sorted(convs) == [(8, True), (8, True), (16, False), (16, False)]
    new = [state for state in states if state.task.workload_key not in union]
    assert new and all("layout_transform" in state.task.name and state.best_s is None for state in new)


def test_the_fastest_build_is_kept_and_builds_follow_it(model, auto, layouts):
    """The records favour a mixed plan; timed as whole builds NCHW16c throughout is the fastest
    (``timers`` stand in for the builds' timings): the cache keeps it and a build follows it."""
    from tuner.plan_timing import choose_by_timing

    timings = {"16x16 nchw, 8x8 nchw16c": 3e-3, "nchw": 2e-3, "nchw16c": 1e-3}
    with tuner.Cache(":memory:") as cache:
        _store(cache, auto, layouts, _costs(layouts, {16: 0, 8: 16}))
        assert tuner.build(model, auto, cache).layout_plan.blocks() == {(16, 16): 0, (8, 8): 16}
        timers = {text: (lambda seconds=seconds: seconds) for text, seconds in timings.items()}
        plan = choose_by_timing(model, auto, cache, rounds=3, settle_s=0, timers=timers)
        assert plan.blocks() == 16
        assert dict(plan.timed_ms) == {text: seconds * 1e3 for text, seconds in timings.items()}
        built = tuner.build(model, auto, cache)
    assert built.layout_plan.blocks() == 16
    assert "chosen by timing whole builds: 16x16 nchw, 8x8 nchw16c 3.00 ms" in built.layout_plan.describe()
    assert [item["plan"] for item in built.metadata()["conv_layout"]["timed_ms"]] == list(timings)
    assert all("NCHWc" in s.task_name for s in built.schedules if "conv2d" in s.task_name)


def test_timing_builds_times_every_candidate_plan(model, auto, layouts):
    """Without stand-ins: each candidate is built and timed; the fastest by median is kept."""
    from tuner.plan_timing import choose_by_timing

    with tuner.Cache(":memory:") as cache:
        _store(cache, auto, layouts, _costs(layouts, {16: 0, 8: 16}))
        plan = choose_by_timing(model, auto, cache, rounds=2, min_repeat_s=0.01, settle_s=0)
        stored = cache.layout_choice(auto.key, model_key(layouts))
    timed = dict(plan.timed_ms)
    assert set(timed) == {"16x16 nchw, 8x8 nchw16c", "nchw", "nchw16c"} and all(ms > 0 for ms in timed.values())
    assert plan.layouts_text() == min(timed, key=timed.get)
    assert stored["timed_ms"] == [{"plan": text, "ms": ms} for text, ms in plan.timed_ms]
