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
from builders import convtranspose_model
from toolchain_cases import FORMS, SAMPLE_SHAPES, all_cases, close, ort_outputs, unknown_op_model
from toolchain_checks import convert_sample, sample_path, toolchain_error

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains import tvm as toolchain

REASON = toolchain.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"TVM unavailable: {REASON}")
REPROS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toolchain_repros", "tvm")

#: compiled in the default run (seconds each); the other samples take 5-60 s per form on 2 cores
QUICK = ["seed_example"]
#: op cases in the default run (about a second each); the rest are marked slow
QUICK_CASES = ("d2s_CRD_b2", "d2s_DCR_b3", "shuffle1d", "shuffle3d", "gather_axis0", "gemm")


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


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[] if n.startswith(QUICK_CASES) else [pytest.mark.slow])
    for n in all_cases()])
def test_op_case_matches_ort_on_tvm(name, tmp_path):
    """DepthToSpace (both modes, b 2-8), Reshape/Transpose up to rank 8, Slice, Concat, Gather,
    Gemm and a 1x1-input ConvTranspose are all exact on TVM.
    """
    model, feeds = all_cases()[name]()
    path = str(tmp_path / "case.onnx")
    onnx.save(model, path)
    compiled = toolchain.compile(path, {k: list(v.shape) for k, v in feeds.items()}, str(tmp_path))
    err, ok = close(compiled.run(feeds), ort_outputs(model, feeds))
    assert ok, f"{name}: max abs error {err}"


SHAPE_EXPR = ("TVM 0.27 Relax ONNX frontend: the rewrite's run-time shape arithmetic on symbolic "
              "spatial dims -> 'cannot handle ShapeExpr inputs' (tests/toolchain_repros/tvm)")


def _symbolic_model(tmp_path, form):
    """A ConvTranspose k4 s2 p1 of X [N, 2, H, W] (all dims symbolic), converted in ``form``."""
    w = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    original = convtranspose_model(["N", 2, "H", "W"], w, strides=[2, 2], pads=[1, 1, 1, 1])
    model, _ = deconv2sub.convert_model(original, ConvertOptions(**FORMS[form]))
    path = str(tmp_path / f"symbolic_{form}.onnx")
    onnx.save(model, path)
    return original, path


@pytest.mark.parametrize("form", [
    "crd", "dcr",
    pytest.param("reshape", marks=pytest.mark.xfail(strict=True, raises=ToolchainError,
                                                    reason=SHAPE_EXPR)),
    pytest.param("default", marks=pytest.mark.xfail(strict=True, raises=ToolchainError,
                                                    reason=SHAPE_EXPR)),
    pytest.param("transpose", marks=pytest.mark.xfail(strict=True, raises=ToolchainError,
                                                      reason=SHAPE_EXPR)),
])
def test_symbolic_dims(form, tmp_path):
    """Imported with every dim symbolic (no shape_dict), the DepthToSpace forms build once and are
    exact at two shapes; the forms that compute shapes at run time do not import on TVM.
    """
    original, path = _symbolic_model(tmp_path, form)
    compiled = toolchain.compile(path, None, str(tmp_path / "tvm"))
    for shape in ((1, 2, 3, 5), (2, 2, 4, 4)):
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        err, ok = close(compiled.run({"X": x}), ort_outputs(original, {"X": x}))
        assert ok, f"shape {shape}: max abs error {err}"


@pytest.mark.xfail(strict=True, raises=ToolchainError,
                   reason="TVM 0.27 Relax ONNX frontend: run-time shape arithmetic on symbolic "
                          "dims -> 'cannot handle ShapeExpr inputs'")
def test_repro_shape_arithmetic_with_symbolic_dims(tmp_path):
    """Shape -> Slice -> Mul -> Reshape on symbolic H, W (what the rewrites emit when spatial dims
    are symbolic) does not import; when upstream fixes it, this XPASSes and fails strict.
    """
    path = os.path.join(REPROS, "shape_arithmetic.onnx")
    compiled = toolchain.compile(path, None, str(tmp_path))
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
