"""TVM's and ONNX Runtime's own log lines stay out of tasks/build/bench unless --verbose."""

from __future__ import annotations

import onnx
import pytest

from benchmarks.bert import bert_model
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    # its embedding Gather makes TVM log a warning from C++ when the model is legalized
    path = tmp_path_factory.mktemp("quiet") / "bert.onnx"
    onnx.save(bert_model(seq_len=8, hidden=32, heads=2, layers=1, intermediate=64, vocab=100, max_positions=16),
              path)
    return path


def test_native_log_lines_reach_the_user_only_with_verbose(tiny_bert, tmp_path):
    loud = run_cli("tasks", tiny_bert, "--verbose")
    assert loud.returncode == 0 and "Fast mode segfaults" in loud.stderr  # what --verbose lets through
    for command in (("tasks",), ("build", "-o", tmp_path / "m.so"), ("bench", "--repeat", 1)):
        result = run_cli(command[0], tiny_bert, *command[1:], "--cache", tmp_path / "c.sqlite") \
            if command[0] != "tasks" else run_cli("tasks", tiny_bert)
        assert result.returncode == 0 and result.stderr == "", (command, result.stderr)
        assert result.stdout  # its own output is all there


def test_an_error_still_reaches_the_user_in_one_line(tmp_path):
    missing = run_cli("bench", tmp_path / "nothing.onnx")
    assert missing.returncode == 2 and missing.stderr.startswith("tuner: error: ")
    assert len(missing.stderr.strip().splitlines()) == 1
