"""The LiteRT (TFLite) toolchain runner: onnx2tf -> .tflite -> ai-edge-litert Interpreter (XNNPACK).

The toolchain lives in its own venv (``.ci/toolchains/tflite.sh /tmp/tc-tflite``, then
``DECONV2SUB_TFLITE_PYTHON=/tmp/tc-tflite/bin/python``); without it the toolchain tests are skipped
with the reason, and only the runner's pure helpers are tested. Every comparison is against ONNX
Runtime running the ORIGINAL model. The default run converts one small model (~20 s); the
samples x forms matrix and the upstream-bug repros are ``slow``.
"""

from __future__ import annotations

import os

import pytest
from toolchain_cases import (
    FORMS,
    NCNN3D,
    TFLITE_SAMPLE_SHAPES,
    close,
    convtranspose3d_block,
    ort_outputs,
    random_feeds,
)
from toolchain_checks import (
    REPROS_DIR,
    assert_timed_in_worker,
    check_converted,
    convert_sample,
    repro_error,
    repro_paths,
    sample_params,
    sample_path,
)

from deconv2sub import ConvertOptions
from deconv2sub.toolchains import ToolchainError, tflite, tflite_worker

REPRO_DIR = os.path.join(REPROS_DIR, "tflite")
REASON = tflite.unavailable_reason()
needs_tflite = pytest.mark.skipif(REASON is not None, reason=f"tflite unavailable: {REASON}")
#: static shapes for the samples: non-square (see TFLITE_SAMPLE_SHAPES), unet3d's inputs tied
SAMPLE_SHAPES = TFLITE_SAMPLE_SHAPES


def ort_error(ref_path, compiled, feeds):
    """(max abs error, within 1e-3 abs + 1e-3 rel) of tflite's outputs vs ORT on ``ref_path``."""
    return close(compiled.run(feeds), ort_outputs(ref_path, feeds))


# --- the runner's own helpers (no toolchain needed) ---------------------------------------------


def test_layout_candidates_by_shape():
    """The NCHW->NHWC permutations that fit a pair of shapes; both when C == H == W."""
    assert tflite_worker.candidate_perms([1, 3, 4, 5], [1, 4, 5, 3]) == [[0, 2, 3, 1]]
    assert tflite_worker.candidate_perms([1, 3, 4, 5], [1, 3, 4, 5]) == [[0, 1, 2, 3]]
    # C == H == W: both readings fit, so the worker must decide by a probe run
    assert tflite_worker.candidate_perms([1, 4, 4, 4], [1, 4, 4, 4]) == [[0, 1, 2, 3],
                                                                         [0, 2, 3, 1]]
    assert tflite_worker.candidate_perms([1, 8, 20], [1, 20, 8]) == [[0, 2, 1]]
    assert tflite_worker.candidate_perms([1, 8, 20], [1, 8, 21]) == []
    assert tflite_worker.candidate_perms([2, 6], [2, 6]) == [[0, 1]]


def test_converter_key_message_is_the_last_error_line():
    """The converter's key message is its last error line (else its last line)."""
    log = "INFO: step 1\nValueError: Dimensions must be equal\n  File \"x.py\", line 3\nbye\n"
    assert tflite_worker.last_error_line(log) == "ValueError: Dimensions must be equal"
    assert tflite_worker.last_error_line("only\nlines\n") == "lines"


def test_unavailable_reason_says_how_to_install(monkeypatch, tmp_path):
    """A missing toolchain interpreter is named, with the install script."""
    monkeypatch.setenv(tflite.ENV_PYTHON, str(tmp_path / "no-such-python"))
    reason = tflite.unavailable_reason()
    assert reason is not None and "does not exist" in reason and "tflite.sh" in reason


# --- through the toolchain ----------------------------------------------------------------------


@needs_tflite
def test_seed_example_dcr_form_maps_to_native_depth_to_space(tmp_path):
    """The DCR form becomes one XNNPACK partition with DEPTH_TO_SPACE, right and timed."""
    src = sample_path("seed_example")
    shapes = SAMPLE_SHAPES["seed_example"]
    feeds = random_feeds(shapes)
    path = convert_sample("seed_example", "dcr", tmp_path)
    before = open(path, "rb").read()
    converted = tflite.compile(path, shapes, str(tmp_path / "dcr"))
    assert open(path, "rb").read() == before  # onnx2tf simplifies its input in place: a copy
    assert "DEPTH_TO_SPACE" in converted.ops and "TRANSPOSE_CONV" not in converted.ops
    assert converted.partitions == 1 and converted.outside_xnnpack == []
    assert converted.input_perm == {"x": [0, 2, 3, 1]}
    err, ok = ort_error(src, converted, feeds)
    assert ok, f"max abs error {err}"
    times = tflite.benchmark([converted], [feeds], samples=5, warmup_s=0.05)
    assert len(times) == 1 and times[0] > 0
    assert_timed_in_worker(converted, feeds)  # the ``time`` op: one invoke, timed in the worker


@needs_tflite
@pytest.mark.slow
def test_original_and_converted_time_interleaved_in_one_worker(tmp_path):
    """The original (TRANSPOSE_CONV) and the CRD form are timed interleaved in one worker."""
    src = sample_path("seed_example")
    shapes = SAMPLE_SHAPES["seed_example"]
    feeds = random_feeds(shapes)
    original = tflite.compile(src, shapes, str(tmp_path / "orig"))
    assert "TRANSPOSE_CONV" in original.ops
    err, ok = ort_error(src, original, feeds)
    assert ok, f"max abs error {err}"
    converted = tflite.compile(convert_sample("seed_example", "crd", tmp_path), shapes,
                               str(tmp_path / "crd"))
    assert "DEPTH_TO_SPACE" not in converted.ops  # CRD: onnx2tf emits Reshape/Transpose
    times = tflite.benchmark([original, converted], [feeds, feeds], samples=5, warmup_s=0.05)
    assert len(times) == 2 and all(t > 0 for t in times)


@needs_tflite
def test_not_an_onnx_file_is_a_one_line_toolchain_error(tmp_path):
    """A file onnx2tf cannot read is a one-line ToolchainError."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ToolchainError) as err:
        tflite.compile(str(bad), {"x": [1, 1, 4, 4]}, str(tmp_path / "w"))
    assert "\n" not in str(err.value) and str(err.value)


# --- samples x forms, and the upstream bugs (slow) ----------------------------------------------

# (sample, form) pairs that onnx2tf 1.29.24 + LiteRT get wrong (benchmarks/toolchains/tflite.md).
SQUARE = "onnx2tf drops the NCHW->NHWC transpose of a C == H == W tensor made by Reshape before " \
         "a padded Conv: wrong numbers (repro conv_after_square_reshape.onnx)"
RANK8 = "the 3-D shuffle's rank-8 Transpose: XNNPACK fails to prepare (repro rank8_transpose_...)"
KNOWN_WRONG = {
    ("dcgan_generator", "reshape"): SQUARE,
    ("dcgan_generator", "default"): SQUARE,
    ("dcgan_generator", "transpose"): SQUARE,
    ("unet3d_upblock", "crd"): RANK8,
    ("unet3d_upblock", "dcr"): RANK8,
    ("unet3d_upblock", "reshape"): RANK8,
    ("unet3d_upblock", "transpose"): RANK8,
    ("unet3d_upblock", "default"): "Gather + Gemm + Conv3d form: wrong numbers (error 0.6); the "
                                   "ORIGINAL ConvTranspose3d is wrong on LiteRT too (0.02)",
}


@needs_tflite
@pytest.mark.parametrize("name,form", sample_params(
    xfails=KNOWN_WRONG, forms=FORMS, samples=sorted(SAMPLE_SHAPES)))
def test_sample_form_matches_ort_on_the_original(name, form, tmp_path):
    """Each form has no TRANSPOSE_CONV on LiteRT and matches ORT on the original (or xfails)."""
    shapes = SAMPLE_SHAPES[name]
    path = convert_sample(name, form, tmp_path)  # as the CLI does: dynamic dims stay dynamic
    compiled = tflite.compile(path, shapes, str(tmp_path / "w"))
    assert "TRANSPOSE_CONV" not in compiled.ops
    err, ok = ort_error(sample_path(name), compiled, random_feeds(shapes))
    assert ok, f"{name} {form}: max abs error {err}"


@needs_tflite
@pytest.mark.slow
@pytest.mark.parametrize("kernel,stride,pad,bn_relu", [(2, 2, 0, False), (4, 2, 1, True)])
def test_3d_block_tflite_profile_is_the_cascade(kernel, stride, pad, bn_relu, tmp_path):
    """The tflite and portable profiles write 3-D as the rank-4 cascade: it converts and matches.

    The depth_to_space_3d form (what ncnn converts) does not convert with onnx2tf (repro
    depth_to_space_after_3d_reshape.onnx).
    """
    model, feeds = convtranspose3d_block(kernel, stride, pad, bn_relu)
    for target in ("tflite", "portable"):
        (tmp_path / target).mkdir()
        ops = check_converted(tflite, model, feeds, ConvertOptions(target=target),
                              tmp_path / target)
        assert "DEPTH_TO_SPACE" not in ops and "CONV_3D_TRANSPOSE" not in ops, ops
    (tmp_path / "ncnn3d").mkdir()
    with pytest.raises(ToolchainError):
        check_converted(tflite, model, feeds, ConvertOptions(target=NCNN3D), tmp_path / "ncnn3d")


# repro file -> what it shows; each asserts the CORRECT behaviour, so it fails (xfail) while the
# upstream bug is there and XPASSes (strict: the suite fails) once onnx2tf/LiteRT fix it.
REPROS = {
    "conv_after_square_reshape.onnx": "onnx2tf drops the NCHW->NHWC transpose of a C == H == W "
                                      "tensor made by Reshape/Slice before a Conv: wrong numbers",
    "rank8_transpose_3d_shuffle.onnx": "rank-8 Transpose (3-D shuffle in one step): onnx2tf "
                                       "splits it, XNNPACK fails to prepare the result",
    "concat_after_3d_shuffle.onnx": "the rank-4 3-D shuffle's [1, 8, 6, 8, 10] result (C == H) "
                                    "concatenated on channels with a skip: onnx2tf concatenates "
                                    "on H (TFLite output [1, 8, 6, 16, 10])",
    "depth_to_space_after_3d_reshape.onnx": "depth_to_space_3d's shuffle: onnx2tf misreads the "
                                            "layout of the rank-4 tensor before DepthToSpace "
                                            "(reshape error)",
}


@needs_tflite
@pytest.mark.slow
@pytest.mark.parametrize("repro", sorted(REPROS))
@pytest.mark.xfail(strict=True, reason="upstream onnx2tf/LiteRT bug, see the repro README")
def test_repro_still_fails(repro, tmp_path):
    """Each repro is still wrong on onnx2tf/LiteRT (an upstream fix XPASSes)."""
    err, ok = repro_error(tflite, os.path.join(REPRO_DIR, repro), str(tmp_path / "w"))
    assert ok, f"max abs error {err}"


def test_every_repro_is_documented():
    """Every repro file has a test entry and a README mention."""
    files = [os.path.basename(p) for p in repro_paths("tflite")]
    assert files == sorted(REPROS)
    with open(os.path.join(REPRO_DIR, "README.md")) as f:
        readme = f.read()
    assert all(f in readme for f in files)
