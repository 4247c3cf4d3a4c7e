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
from toolchain_checks import (
    REPROS_DIR,
    assert_timed_in_worker,
    convert_sample,
    sample_path,
    toolchain_error,
)

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains import tvm as toolchain
from deconv2sub.toolchains.worker import WorkerCompiled

REASON = toolchain.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"TVM unavailable: {REASON}")
REPROS = os.path.join(REPROS_DIR, "tvm")

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
    """Every op case of the rewrites is exact on TVM.

    DepthToSpace (both modes, b 2-8), Reshape/Transpose up to rank 8, Slice, Concat, Gather, Gemm
    and a 1x1-input ConvTranspose.
    """
    model, feeds = all_cases()[name]()
    path = str(tmp_path / "case.onnx")
    onnx.save(model, path)
    compiled = toolchain.compile(path, {k: list(v.shape) for k, v in feeds.items()}, str(tmp_path))
    err, ok = close(compiled.run(feeds), ort_outputs(model, feeds))
    assert ok, f"{name}: max abs error {err}"


def _symbolic_model(tmp_path, form):
    """A ConvTranspose k4 s2 p1 of X [N, 2, H, W] (all dims symbolic), converted in ``form``."""
    w = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    original = convtranspose_model(["N", 2, "H", "W"], w, strides=[2, 2], pads=[1, 1, 1, 1])
    model, _ = deconv2sub.convert_model(original, ConvertOptions(**FORMS[form]))
    path = str(tmp_path / f"symbolic_{form}.onnx")
    onnx.save(model, path)
    return original, path


def _assert_symbolic_matches(original, path, tmp_path, shapes):
    """Imported with every dim symbolic (no shape_dict), built once, exact at each of ``shapes``."""
    compiled = toolchain.compile(path, None, str(tmp_path / "tvm"))
    for shape in shapes:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        err, ok = close(compiled.run({"X": x}), ort_outputs(original, {"X": x}))
        assert ok, f"shape {shape}: max abs error {err}"


@pytest.mark.parametrize("form", ["crd", "dcr", "reshape", "default", "transpose"])
def test_symbolic_dims(form, tmp_path):
    """Every form, imported with every dim symbolic, builds once and is exact at two shapes.

    The forms that compute Reshape shapes at run time too (scalar Gather of Shape + Mul +
    Unsqueeze + Concat, which the importer folds into symbolic shapes).
    """
    original, path = _symbolic_model(tmp_path, form)
    _assert_symbolic_matches(original, path, tmp_path, ((1, 2, 3, 5), (2, 2, 4, 4)))


def _w(*shape):
    return np.random.default_rng(2).standard_normal(shape).astype(np.float32)


#: (input shape with symbolic dims, weight, attributes, two run shapes): what the portable default
#: emits for each, measured on TVM 0.27 (benchmarks/toolchains/tvm.md, "Symbolic dims")
PORTABLE_SYMBOLIC = {
    # DepthToSpace(CRD) + Slice
    "2d_k4s2p1": (["N", 2, "H", "W"], _w(2, 3, 4, 4), dict(strides=[2, 2], pads=[1] * 4),
                  [(1, 2, 3, 5), (2, 2, 4, 4)]),
    # unequal strides, every size symbolic: Reshape/Transpose cascade with run-time shapes
    "2d_s2x3": (["N", 2, "H", "W"], _w(2, 3, 4, 6), dict(strides=[2, 3], pads=[1] * 4),
                [(1, 2, 3, 5), (2, 2, 4, 4)]),
    # 1-D: Reshape [0, M, s, -1], no shape arithmetic
    "1d_k16s8p4": (["N", 4, "T"], _w(4, 3, 16), dict(strides=[8], pads=[4, 4]),
                   [(1, 4, 7), (2, 4, 9)]),
    # 3-D, every size symbolic: Conv3d + rank-4 Reshape/Transpose + DepthToSpace(CRD), run-time
    # Reshape targets (depth_to_space_3d)
    "3d_k4s2p1": (["N", 4, "D", "H", "W"], _w(4, 2, 4, 4, 4), dict(strides=[2] * 3, pads=[1] * 6),
                  [(1, 4, 2, 3, 4), (2, 4, 3, 3, 2)]),
    # output_shape with symbolic sizes: the crop computed at run time
    "2d_output_shape": (["N", 2, "H", "W"], _w(2, 3, 3, 3),
                        dict(strides=[2, 2], output_shape=[9, 9]), [(1, 2, 4, 4), (2, 2, 4, 4)]),
}


@pytest.mark.parametrize("target", ["portable", "tvm"])
@pytest.mark.parametrize("case", list(PORTABLE_SYMBOLIC))
def test_default_output_with_symbolic_dims(case, target, tmp_path):
    """Default (portable) and tvm-profile outputs of models with symbolic sizes run on TVM.

    Every ConvTranspose is rewritten; the output imports with its symbolic dims kept and matches
    ORT on the original at two shapes.
    """
    shape, weight, attrs, runs = PORTABLE_SYMBOLIC[case]
    original = convtranspose_model(shape, weight, **attrs)
    model, report = deconv2sub.convert_model(original, ConvertOptions(target=target))
    assert report.rewritten and not report.skipped, [n.reason for n in report.skipped]
    path = str(tmp_path / "converted.onnx")
    onnx.save(model, path)
    _assert_symbolic_matches(original, path, tmp_path, runs)


#: samples whose originals import on TVM with their symbolic dims (enet: TVM's PRelu converter
#: after Resize; unet, unet3d: the skip Concat of differently named symbolic sizes; as originals
#: too)
SYMBOLIC_SAMPLES = {
    "autoencoder": [{"x": (1, 1, 28, 28)}, {"x": (3, 1, 28, 28)}],
    "dcgan_generator": [{"z": (1, 16, 1, 1)}, {"z": (2, 16, 1, 1)}],
    "grouped_upsampler": [{"x": (1, 8, 8, 8)}, {"x": (2, 8, 5, 7)}],
    "hifigan_upsampler": [{"mel": (1, 16, 20)}, {"mel": (2, 16, 33)}],
}


@pytest.mark.slow
@pytest.mark.parametrize("sample", list(SYMBOLIC_SAMPLES))
def test_portable_sample_with_symbolic_dims(sample, tmp_path):
    """The samples converted with default options run on TVM with their symbolic dims kept."""
    original = onnx.load(sample_path(sample))
    model, _ = deconv2sub.convert_model(original)
    path = str(tmp_path / "converted.onnx")
    onnx.save(model, path)
    compiled = toolchain.compile(path, None, str(tmp_path / "tvm"))
    for shapes in SYMBOLIC_SAMPLES[sample]:
        rng = np.random.default_rng(3)
        feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
        err, ok = close(compiled.run(feeds), ort_outputs(original, feeds))
        assert ok, f"{sample} at {shapes}: max abs error {err}"


@pytest.mark.xfail(strict=True, raises=ToolchainError,
                   reason="TVM 0.27 Relax ONNX frontend: run-time shape arithmetic on symbolic "
                          "dims -> 'cannot handle ShapeExpr inputs'")
def test_repro_shape_arithmetic_with_symbolic_dims(tmp_path):
    """Shape -> Slice -> Mul -> Reshape on symbolic H, W does not import.

    (What the rewrites emitted when spatial dims were symbolic.) When upstream fixes it, this
    XPASSes and fails strict.
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


def test_timed_run(tmp_path):
    """``timed_run`` times one run where TVM runs it: in its worker, below the round trip."""
    path = os.path.join(REPROS, "shape_arithmetic.onnx")
    compiled = toolchain.compile(path, {"X": [1, 4, 3, 5]}, str(tmp_path))
    feeds = {"X": np.random.default_rng(0).standard_normal((1, 4, 3, 5)).astype(np.float32)}
    if isinstance(compiled, WorkerCompiled):
        assert_timed_in_worker(compiled, feeds)
    else:  # TVM in this interpreter: perf_counter around the run
        assert compiled.timed_run(feeds) > 0


def test_converter_failure_is_one_line_toolchain_error(tmp_path):
    """An op the frontend does not know raises ToolchainError with one line, no traceback."""
    path = str(tmp_path / "unknown_op.onnx")
    onnx.save(unknown_op_model(), path)
    with pytest.raises(ToolchainError) as info:
        toolchain.compile(path, {"X": [1, 2]}, str(tmp_path))
    assert "\n" not in str(info.value) and str(info.value).startswith("TVM")
