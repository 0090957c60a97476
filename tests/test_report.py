"""`tuner report`: the page for a tuned ResNet-18, opened in a real headless browser."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import onnx
import pytest

from benchmarks.models import resnet18_model
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SCREENSHOT = Path(__file__).resolve().parent.parent / "build" / "report-screenshot.png"
OURS_RGB, THEIRS_RGB = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    model = folder / "resnet18.onnx"
    onnx.save(resnet18_model(size=32, width=8, num_classes=10), model)
    cache = folder / "cache.sqlite"
    tuned = run_cli("tune", model, "--cache", cache, "--trials", 12, "--search", "random", "--batch-size", 4,
                    "--quiet")
    assert tuned.returncode == 0, tuned.stderr
    page, data = folder / "report.html", folder / "report.json"
    result = run_cli("report", model, "--cache", cache, "-o", page, "--json", data, "--repeat", 3)
    assert result.returncode == 0, result.stderr
    return page, json.loads(data.read_text()), result


def test_report_is_quiet_and_its_data_is_complete(reported):
    _, data, result = reported
    assert result.stderr == ""  # no TVM or ONNX Runtime log line
    assert data["tasks_tuned"] >= 1 and data["curve"]  # tuned: records, and a curve drawn from them
    assert data["curve"][-1]["estimate_ms"] <= data["curve"][0]["estimate_ms"]
    assert data["top1_agree"] == data["top1_inputs"] and data["max_rel_err"] < 1e-4
    tasks = [row for row in data["rows"] if row["ms"] is not None and row["source"] != "runtime"]
    assert len(tasks) == data["tasks"] and all(row["nodes"] for row in tasks)
    assert all(row["onnxruntime_ms"] for row in tasks)  # every task has ONNX Runtime nodes beside it
    assert data["peak_gflops"] > 0
    assert data["conv_layout"] == "nchw"
    # ONNX Runtime's run overhead outside its nodes is a large share of so small a model's run, so how
    # much of a run its nodes cover is measured on real sizes (benchmarks/node_mapping.py), not here;
    # the means of its per-node times may also exceed the median run
    assert sum(row["onnxruntime_ms"] or 0 for row in data["rows"]) > 0


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_renders_its_charts_and_every_task_in_a_browser(reported):
    from PIL import Image

    page, data, _ = reported
    browser = _browser()
    try:
        browser.get(page.as_uri())
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, height + 400)  # the whole page in one screenshot
        charts = {element.get_attribute("id"): element.rect
                  for element in browser.find_elements("css selector", "img.chart")}
        loaded = browser.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        table = browser.find_element("id", "tasks").text
        SCREENSHOT.parent.mkdir(exist_ok=True)
        png = browser.get_screenshot_as_png()
    finally:
        browser.quit()
    SCREENSHOT.write_bytes(png)
    assert set(charts) == {"chart-latency", "chart-layers", "chart-curve"} and all(loaded)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.height >= max(rect["y"] + rect["height"] for rect in charts.values())
    for name, rect in charts.items():
        region = image.crop((int(rect["x"]), int(rect["y"]), int(rect["x"] + rect["width"]),
                             int(rect["y"] + rect["height"])))
        colors = region.getcolors(maxcolors=1 << 20)
        painted = sum(count for count, rgb in colors if rgb != (255, 255, 255))
        assert rect["width"] > 200 and painted > 0.02 * rect["width"] * rect["height"], name  # axes, labels, bars
        blue = sum(count for count, rgb in colors if _near(rgb, OURS_RGB))
        assert blue > 100, f"{name}: no bar or line of ours drawn"
        if name != "chart-curve":
            assert sum(count for count, rgb in colors if _near(rgb, THEIRS_RGB)) > 100, name
    for row in data["rows"]:
        assert row["task"] in table


def _near(rgb, target, tolerance=12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, target))
