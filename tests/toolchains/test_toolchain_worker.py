"""The worker that runs a toolchain in another interpreter (deconv2sub.toolchains.worker).

Uses ``tests/fake_toolchain.py`` in a subprocess of this same interpreter, so it runs everywhere.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from fake_toolchain import SLOW_S
from toolchain_checks import assert_timed_in_worker

from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains.worker import WorkerCompiled, probe

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch):
    """The worker must find ``fake_toolchain`` (deconv2sub itself it finds on its own)."""
    monkeypatch.setenv("PYTHONPATH", TESTS)


def test_compile_and_run_through_worker(tmp_path):
    """Names and artifacts come back from the worker; outputs are computed there."""
    compiled = WorkerCompiled(sys.executable, "fake_toolchain", "m.onnx", {"X": [2, 3]},
                              str(tmp_path))
    try:
        assert compiled.input_names == ["X"] and compiled.output_names == ["Y"]
        assert compiled.artifacts == [os.path.abspath("m.onnx"),
                                      str({"X": [2, 3]})]
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        out = compiled.run({"X": x})
        np.testing.assert_array_equal(out["Y"], 2 * x)
        assert sorted(os.listdir(tmp_path)) == []  # feeds/outputs files are cleaned up
    finally:
        compiled.close()


def test_timed_run_is_timed_in_the_worker(tmp_path):
    """The ``time`` op times the run in the worker: below the round trip, no files left behind."""
    compiled = WorkerCompiled(sys.executable, "fake_toolchain", "m.onnx", {"X": [2, 3]},
                              str(tmp_path))
    try:
        assert_timed_in_worker(compiled, {"X": np.ones((2, 3), np.float32)})
        assert os.listdir(tmp_path) == []
    finally:
        compiled.close()


def test_timed_run_covers_the_run(tmp_path):
    """A run that sleeps ``SLOW_S`` in the worker takes at least that long in ``timed_run``."""
    compiled = WorkerCompiled(sys.executable, "fake_toolchain", "slow.onnx", {"X": [1]},
                              str(tmp_path))
    try:
        assert compiled.timed_run({"X": np.ones(1, np.float32)}) >= SLOW_S
    finally:
        compiled.close()


def test_timed_run_failure_is_a_toolchain_error(tmp_path):
    """A run that fails in the worker (no input ``X``) raises ToolchainError; no file is left."""
    compiled = WorkerCompiled(sys.executable, "fake_toolchain", "m.onnx", {"X": [1]},
                              str(tmp_path))
    try:
        with pytest.raises(ToolchainError, match="X"):
            compiled.timed_run({"other": np.ones(1, np.float32)})
        assert os.listdir(tmp_path) == []
    finally:
        compiled.close()


def test_converter_failure_comes_back_as_one_line(tmp_path):
    """The converter's error reaches the parent as its first line, without the chatter."""
    with pytest.raises(ToolchainError) as info:
        WorkerCompiled(sys.executable, "fake_toolchain", "bad.onnx", {"X": [1]}, str(tmp_path))
    assert str(info.value) == "fake: unsupported op Foo"


def test_worker_that_cannot_import_the_module_says_so(tmp_path):
    """A worker that dies on import is reported with the module's name."""
    with pytest.raises(ToolchainError) as info:
        WorkerCompiled(sys.executable, "no_such_toolchain_module", "m.onnx", {}, str(tmp_path))
    assert "died" in str(info.value) and "no_such_toolchain_module" in str(info.value)


def test_probe():
    """``probe`` is None for a usable module, else why: cannot import, cannot run."""
    assert probe(sys.executable, "fake_toolchain") is None
    reason = probe(sys.executable, "no_such_toolchain_module")
    assert "cannot import no_such_toolchain_module" in reason
    assert "cannot run" in probe("/nonexistent/python", "fake_toolchain")
