"""The plumbing of deployment-toolchain runtimes (``--runtime ncnn|mnn|tflite|tvm|iree|rknn``).

With a stand-in toolchain module: the candidate goes through the toolchain once per input shape
set, the original runs on ONNX Runtime, a toolchain that mistranslates fails verification, one
that cannot convert the original is reported, and a missing toolchain is exit 3.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import onnx
import pytest
from builders import convtranspose_model, run
from click.testing import CliRunner

from deconv2sub.cli import main
from deconv2sub.errors import InputError
from deconv2sub.runtime.base import RunnerOptions, model_source
from deconv2sub.runtime.toolchain import toolchain_factory
from deconv2sub.toolchains import Compiled, ToolchainError


class _OrtCompiled(Compiled):
    """A stand-in 'toolchain': ONNX Runtime on the file, optionally off by ``bias``."""

    def __init__(self, path, bias):
        self.model = onnx.load(path)
        self.output_names = [o.name for o in self.model.graph.output]
        self.input_names = [i.name for i in self.model.graph.input]
        self.artifacts = [path]
        self.bias = bias

    def run(self, feeds):
        outs = run(self.model, dict(feeds))
        return {n: o + self.bias for n, o in zip(self.output_names, outs)}


def _fake(bias=0.0, refuse_op=None, reason=None):
    mod = types.ModuleType("deconv2sub.toolchains.tvm")
    mod.NAME = "tvm"
    mod.calls = []
    mod.unavailable_reason = lambda: reason
    mod.version = lambda: "0.0-fake"

    def compile(model_path, input_shapes, workdir):
        mod.calls.append(dict(input_shapes))
        ops = {n.op_type for n in onnx.load(model_path).graph.node}
        if refuse_op in ops:
            raise ToolchainError(f"op {refuse_op} is not supported")
        return _OrtCompiled(model_path, bias)

    mod.compile = compile
    return mod


@pytest.fixture
def model_file(tmp_path):
    """A ConvTranspose k4 s2 p1 model with a symbolic batch, saved in ``tmp_path``."""
    w = np.random.default_rng(0).standard_normal((4, 3, 4, 4)).astype(np.float32)
    path = tmp_path / "m.onnx"
    model = convtranspose_model(["N", 4, 5, 6], w, None, strides=[2, 2], pads=[1, 1, 1, 1])
    onnx.save(model, path)
    return path


def _convert(model_file, tmp_path, *extra):
    """``deconv2sub convert --runtime tvm`` (the stand-in) of ``model_file``: (result, output)."""
    out = tmp_path / "out.onnx"
    return CliRunner().invoke(
        main, ["convert", str(model_file), "-o", str(out), "--runtime", "tvm", *extra]
    ), out


def test_toolchain_verifies_the_candidate_against_ort(monkeypatch, model_file, tmp_path):
    """The candidate runs on the toolchain once per trial shape and passes against ORT."""
    fake = _fake()
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", fake)
    r, out = _convert(model_file, tmp_path)
    assert r.exit_code == 0, r.output
    assert out.exists() and "PASSED" in r.output
    # two trial shapes (symbolic batch): one toolchain conversion each; the original never
    # reached it
    assert len(fake.calls) == 2 and fake.calls[0] != fake.calls[1]


def test_toolchain_mistranslation_fails_verification(monkeypatch, model_file, tmp_path):
    """A toolchain that computes the candidate wrong fails verification; nothing is written."""
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", _fake(bias=0.05))
    r, out = _convert(model_file, tmp_path)
    assert r.exit_code == 1 and "FAILED" in r.output and not out.exists()


def test_toolchain_that_cannot_convert_the_rewrite_fails(monkeypatch, model_file, tmp_path):
    """A toolchain that refuses the rewrite's op fails with its message; another form passes."""
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", _fake(refuse_op="DepthToSpace"))
    r, out = _convert(model_file, tmp_path)
    assert r.exit_code == 1 and "op DepthToSpace is not supported" in r.output and not out.exists()
    # another target's form (no DepthToSpace) survives it
    r, out = _convert(model_file, tmp_path, "--target", "ethos-u")
    assert r.exit_code == 0, r.output


def test_missing_toolchain_is_exit_3(monkeypatch, model_file, tmp_path):
    """An unavailable toolchain is exit 3 with its reason."""
    monkeypatch.setitem(
        sys.modules, "deconv2sub.toolchains.tvm", _fake(reason="TVM is not installed: pip ...")
    )
    r, out = _convert(model_file, tmp_path)
    assert r.exit_code == 3 and "TVM is not installed" in r.output and not out.exists()


def test_validate_on_a_toolchain(monkeypatch, model_file, tmp_path):
    """``validate --runtime`` passes a right toolchain and fails a wrong one."""
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", _fake())
    r = CliRunner().invoke(main, ["validate", str(model_file), str(model_file), "--runtime", "tvm"])
    assert r.exit_code == 0, r.output
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", _fake(bias=1.0))
    r = CliRunner().invoke(main, ["validate", str(model_file), str(model_file), "--runtime", "tvm"])
    assert r.exit_code == 1, r.output


def test_toolchain_tolerances_come_from_its_module(monkeypatch, model_file, tmp_path):
    """A toolchain module's ``TOLERANCES`` (RKNN's float16) replace the 1e-3 default.

    An error of 5e-3 fails with the default and passes with (1e-2, 1e-2).
    """
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", _fake(bias=5e-3))
    r, _ = _convert(model_file, tmp_path)
    assert r.exit_code == 1, r.output
    fake = _fake(bias=5e-3)
    fake.TOLERANCES = (1e-2, 1e-2)
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", fake)
    r, _ = _convert(model_file, tmp_path)
    assert r.exit_code == 0, r.output


class _TimedCompiled(_OrtCompiled):
    """A stand-in whose ``timed_run`` reports 0.25 s per call (and logs the batch), or fails."""

    def __init__(self, path, log, fail):
        super().__init__(path, 0.0)
        self.log, self.fail = log, fail

    def timed_run(self, feeds):
        if self.fail:
            raise ToolchainError("the worker died")
        self.log.append(feeds["X"].shape[0])
        return 0.25


def _timed_runner(monkeypatch, model_file, max_batch=None, fail=False):
    """(ToolchainRunner of ``model_file`` on a stand-in tvm, its module, the timed batches)."""
    mod, log = _fake(), []

    def compile(model_path, input_shapes, workdir):
        mod.calls.append(dict(input_shapes))
        return _TimedCompiled(model_path, log, fail)

    mod.compile = compile
    if max_batch is not None:
        mod.MAX_BATCH = max_batch
    monkeypatch.setitem(sys.modules, "deconv2sub.toolchains.tvm", mod)
    runner = toolchain_factory("tvm")(model_source(str(model_file)), "the model",
                                      RunnerOptions(provider="cpu"))
    return runner, mod, log


@pytest.mark.parametrize("max_batch,expected,timed", [(None, 0.25, [3]), (1, 0.75, [1, 1, 1])])
def test_timed_run_is_the_compiled_models_own(monkeypatch, model_file, max_batch, expected,
                                              timed):
    """``timed_run`` is the compiled model's ``timed_run`` for the feeds' shapes.

    On a toolchain without a batch axis (``MAX_BATCH = 1``): the sum over the samples, each
    compiled for batch 1 (once).
    """
    runner, mod, log = _timed_runner(monkeypatch, model_file, max_batch)
    x = np.zeros((3, 4, 5, 6), np.float32)
    assert runner.timed_run({"X": x}) == pytest.approx(expected)
    assert log == timed
    assert mod.calls == [{"X": (timed[0], 4, 5, 6)}]
    runner.run({"X": x})  # run compiles nothing new for the same shapes
    assert len(mod.calls) == 1


def test_timed_run_failure_is_an_input_error(monkeypatch, model_file):
    """A toolchain that fails to time a run raises InputError naming the toolchain, as run does."""
    runner, _, _ = _timed_runner(monkeypatch, model_file, fail=True)
    with pytest.raises(InputError, match="tvm failed to run the model: the worker died"):
        runner.timed_run({"X": np.zeros((1, 4, 5, 6), np.float32)})


def test_build_notes_collect_every_builds_remarks(monkeypatch, model_file):
    """``build_notes`` lists the remarks of each shape's build (RKNN's CPU-placed layers)."""
    runner, mod, _ = _timed_runner(monkeypatch, model_file)
    assert runner.build_notes() == []
    original = mod.compile

    def noted(model_path, input_shapes, workdir):
        compiled = original(model_path, input_shapes, workdir)
        compiled.notes = [f"built for {input_shapes['X']}"]
        return compiled

    mod.compile = noted
    for n in (1, 2):
        runner.run({"X": np.zeros((n, 4, 5, 6), np.float32)})
    assert runner.build_notes() == ["built for (1, 4, 5, 6)", "built for (2, 4, 5, 6)"]
