"""Apache TVM (Relax ONNX frontend, LLVM host CPU, Relax VM) as a deployment target.

Skipped with the reason when TVM is not importable here and ``DECONV2SUB_TVM_PYTHON`` does not name
an interpreter that has it (``.ci/toolchains/tvm.sh VENV``). Each converted sample goes through
TVM's own importer and compiler and must match ONNX Runtime running the ORIGINAL sample.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains import tvm as toolchain
from toolchain_cases import (FORMS, SAMPLE_SHAPES, all_cases, close, ort_outputs,
                             unknown_op_model)
from toolchain_checks import convert_sample, sample_path, toolchain_error

REASON = toolchain.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"TVM unavailable: {REASON}")
REPROS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toolchain_repros", "tvm")

#: compiled in the default run (seconds each); the other samples take 5-60 s per form on 2 cores
QUICK = ["seed_example", "autoencoder"]


def _params(samples):
    return [(s, f) for s in samples for f in ["original", *FORMS]]


def _slow_params():
    slow = [s for s in SAMPLE_SHAPES if s not in QUICK]
    return [pytest.param(s, f, marks=pytest.mark.slow) for s, f in _params(slow)]


@pytest.mark.parametrize("sample,form", _params(QUICK) + _slow_params())
def test_sample_matches_ort_on_tvm(sample, form, tmp_path):
    """Every form of every sample (and the original) compiles on TVM and matches ORT."""
    path = sample_path(sample) if form == "original" else convert_sample(sample, form, tmp_path)
    err, ok = toolchain_error(toolchain, path, sample, str(tmp_path / "tvm"))
    assert ok, f"{sample} {form}: max abs error {err} against ORT on the original"


@pytest.mark.parametrize("name", list(all_cases()))
def test_op_case_matches_ort_on_tvm(name, tmp_path):
    """DepthToSpace (both modes, b 2-8), Reshape/Transpose up to rank 8, Slice, Concat, Gather,
    Gemm and a 1x1-input ConvTranspose are all exact on TVM."""
    model, feeds = all_cases()[name]()
    path = str(tmp_path / "case.onnx")
    onnx.save(model, path)
    compiled = toolchain.compile(path, {k: list(v.shape) for k, v in feeds.items()}, str(tmp_path))
    err, ok = close(compiled.run(feeds), ort_outputs(model, feeds))
    assert ok, f"{name}: max abs error {err}"


@pytest.mark.parametrize("form", ["crd", "dcr", "reshape", "transpose"])
def test_symbolic_dims_import_for_shape_free_forms(form, tmp_path):
    """With the batch left symbolic, the DepthToSpace/Reshape forms import and run at two batches
    (their Reshapes use 0 / -1, no run-time shape arithmetic on the batch)."""
    path = convert_sample("autoencoder", form, tmp_path)
    compiled = toolchain.compile_here(path, None, str(tmp_path / "tvm"))
    ref_model = onnx.load(sample_path("autoencoder"))
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 28, 28)).astype(np.float32)
        err, ok = close(compiled.run({"x": x}), ort_outputs(ref_model, {"x": x}))
        assert ok, f"batch {batch}: max abs error {err}"


@pytest.mark.xfail(strict=True, raises=ToolchainError,
                   reason="TVM 0.27 Relax ONNX frontend: run-time shape arithmetic on symbolic "
                          "dims -> 'cannot handle ShapeExpr inputs'")
def test_repro_shape_arithmetic_with_symbolic_dims(tmp_path):
    """Shape -> Slice -> Mul -> Reshape on symbolic H, W (what the rewrites emit when spatial dims
    are symbolic) does not import; when upstream fixes it, this XPASSes and fails strict."""
    path = os.path.join(REPROS, "shape_arithmetic.onnx")
    compiled = toolchain.compile_here(path, None, str(tmp_path))
    x = np.random.default_rng(0).standard_normal((1, 4, 3, 5)).astype(np.float32)
    err, ok = close(compiled.run({"X": x}), ort_outputs(onnx.load(path), {"X": x}))
    assert ok, f"max abs error {err}"


def test_repro_shape_arithmetic_is_exact_with_static_shapes(tmp_path):
    """The same repro imports and is exact once the shapes are static (the runner's default)."""
    path = os.path.join(REPROS, "shape_arithmetic.onnx")
    compiled = toolchain.compile(path, {"X": [1, 4, 3, 5]}, str(tmp_path))
    x = np.random.default_rng(0).standard_normal((1, 4, 3, 5)).astype(np.float32)
    err, ok = close(compiled.run({"X": x}), ort_outputs(onnx.load(path), {"X": x}))
    assert ok, f"max abs error {err}"


def test_converter_failure_is_one_line_toolchain_error(tmp_path):
    """An op the frontend does not know raises ToolchainError with one line, no traceback."""
    path = str(tmp_path / "unknown_op.onnx")
    onnx.save(unknown_op_model(), path)
    with pytest.raises(ToolchainError) as info:
        toolchain.compile(path, {"X": [1, 2]}, str(tmp_path))
    assert "\n" not in str(info.value) and str(info.value).startswith("TVM")
