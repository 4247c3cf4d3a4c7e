"""IREE (iree-import-onnx, iree-compile llvm-cpu for the host CPU, iree.runtime) as a target.

Skipped with the reason when IREE is not importable here and ``DECONV2SUB_IREE_PYTHON`` does not
name an interpreter that has it (``.ci/toolchains/iree.sh VENV``). Each converted sample goes
through IREE's own importer and compiler and must match ONNX Runtime running the ORIGINAL sample;
the forms IREE gets wrong are pinned as strict xfails, so that an upstream fix shows up.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from toolchain_cases import FORMS, SAMPLE_SHAPES, all_cases, close, ort_outputs, unknown_op_model
from toolchain_checks import REPROS_DIR, check_sample, sample_params

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains import iree as toolchain

REASON = toolchain.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"IREE unavailable: {REASON}")
REPROS = os.path.join(REPROS_DIR, "iree")

#: compiled in the default run; the other samples take 10-60 s per form on 2 cores
QUICK = ["seed_example"]
QUICK_FORMS = ("original", "dcr", "default")
CRD_BUG = ("IREE DepthToSpace CRD miscompiled when C/b^2 != b (iree-org/iree#24179, "
           "tests/toolchain_repros/iree/depth_to_space_crd.onnx)")
#: (sample, form) -> why IREE fails it, as measured with IREE 3.13
KNOWN_BAD = {
    ("grouped_upsampler", "original"): "iree-compile rejects the depthwise ConvTranspose "
                                       "('tensor.collapse_shape' op expected reassociation map)",
}
#: samples whose "crd" form has no 2-D DepthToSpace (1-D/3-D shuffles are Reshape/Transpose)
CRD_OK = {"hifigan_upsampler", "unet3d_upblock"}
#: grouped Convs keep the CRD order whatever --order says (DCR would split the groups' channels)
DCR_IS_CRD = {"grouped_upsampler"}


def _xfails():
    """(sample, form) -> the strict xfail of what IREE gets wrong there."""
    xfails = {pair: pytest.mark.xfail(strict=True, raises=ToolchainError, reason=why)
              for pair, why in KNOWN_BAD.items()}
    for sample in SAMPLE_SHAPES:
        if sample not in CRD_OK:
            xfails[sample, "crd"] = CRD_BUG
        if sample in DCR_IS_CRD:
            xfails[sample, "dcr"] = CRD_BUG
    return xfails


@pytest.mark.parametrize("sample,form", sample_params(
    [(s, f) for s in QUICK for f in QUICK_FORMS], _xfails()))
def test_sample_matches_ort_on_iree(sample, form, tmp_path):
    """The forms IREE compiles right (DCR, Reshape/Transpose, default, transpose) match ORT."""
    check_sample(toolchain, sample, form, tmp_path)


def _case_param(name):
    quick = ("d2s_CRD_b2_c1", "d2s_DCR_b2_c1", "shuffle3d")
    marks = [] if name.startswith(quick) else [pytest.mark.slow]
    if name.startswith("d2s_CRD") and name.endswith("_ne"):
        marks.append(pytest.mark.xfail(strict=True, reason=CRD_BUG))
    return pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", [_case_param(n) for n in all_cases()])
def test_op_case_matches_ort_on_iree(name, tmp_path):
    """Every op case but CRD with C/b^2 != b is exact on IREE.

    DCR at every block size, CRD where C/b^2 == b, Reshape/Transpose up to rank 8, Slice, Concat,
    Gather, Gemm and a 1x1-input ConvTranspose match ORT; CRD with C/b^2 != b does not (strict
    xfail).
    """
    model, feeds = all_cases()[name]()
    path = str(tmp_path / "case.onnx")
    onnx.save(model, path)
    compiled = toolchain.compile(path, {k: list(v.shape) for k, v in feeds.items()}, str(tmp_path))
    err, ok = close(compiled.run(feeds), ort_outputs(model, feeds))
    assert ok, f"{name}: max abs error {err}"


@pytest.mark.xfail(strict=True, reason=CRD_BUG)
def test_repro_depth_to_space_crd(tmp_path):
    """The minimal repro: DepthToSpace(2, CRD) of [1, 4, 1, 2]; IREE returns the input order."""
    path = os.path.join(REPROS, "depth_to_space_crd.onnx")
    x = np.arange(8, dtype=np.float32).reshape(1, 4, 1, 2)
    out = toolchain.compile(path, {"X": [1, 4, 1, 2]}, str(tmp_path)).run({"X": x})["Y"]
    np.testing.assert_array_equal(out, ort_outputs(onnx.load(path), {"X": x})["Y"])


@pytest.mark.xfail(strict=True, raises=ToolchainError,
                   reason="IREE 3.13 cannot compile a depthwise ConvTranspose")
def test_repro_depthwise_convtranspose(tmp_path):
    """IREE cannot compile a depthwise ConvTranspose (strict xfail).

    The layer is grouped_upsampler's second, k3 s2 p1 op1 of [1, 4, 3, 3]: iree-compile fails
    ('tensor.collapse_shape' op expected reassociation map ...).
    """
    path = os.path.join(REPROS, "depthwise_convtranspose.onnx")
    x = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    out = toolchain.compile(path, {"X": [1, 4, 3, 3]}, str(tmp_path)).run({"X": x})
    err, ok = close(out, ort_outputs(onnx.load(path), {"X": x}))
    assert ok, f"max abs error {err}"


def test_depthwise_convtranspose_rewrite_compiles(tmp_path):
    """The same layer rewritten compiles and is exact on IREE.

    The rewrite (depthwise Conv + Reshape/Transpose shuffle) is the way to deploy it there.
    """
    src = os.path.join(REPROS, "depthwise_convtranspose.onnx")
    model, _ = deconv2sub.convert_model(src, ConvertOptions(**FORMS["reshape"]))
    path = str(tmp_path / "rewritten.onnx")
    onnx.save(model, path)
    x = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    out = toolchain.compile(path, {"X": [1, 4, 3, 3]}, str(tmp_path / "iree")).run({"X": x})
    err, ok = close(out, ort_outputs(onnx.load(src), {"X": x}))
    assert ok, f"max abs error {err}"


def test_converter_failure_is_one_line_toolchain_error(tmp_path):
    """An op the importer does not know raises ToolchainError with one line, no traceback."""
    path = str(tmp_path / "unknown_op.onnx")
    onnx.save(unknown_op_model(), path)
    with pytest.raises(ToolchainError) as info:
        toolchain.compile(path, {"X": [1, 2]}, str(tmp_path))
    assert "\n" not in str(info.value) and str(info.value).startswith("iree-import-onnx failed")
