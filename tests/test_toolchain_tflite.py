"""The LiteRT (TFLite) toolchain runner: onnx2tf -> .tflite -> ai-edge-litert Interpreter (XNNPACK).

The toolchain lives in its own venv (``.ci/toolchains/tflite.sh /tmp/tc-tflite``, then
``DECONV2SUB_TFLITE_PYTHON=/tmp/tc-tflite/bin/python``); without it the toolchain tests are skipped
with the reason, and only the runner's pure helpers are tested. Every comparison is against ONNX
Runtime running the ORIGINAL model. The default run converts one small model (~20 s); the
samples x forms matrix and the upstream-bug repros are ``slow``.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.toolchains import ToolchainError, tflite, tflite_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES_DIR = os.path.join(ROOT, "samples")
REPRO_DIR = os.path.join(ROOT, "tests", "toolchain_repros", "tflite")
REASON = tflite.unavailable_reason()
needs_tflite = pytest.mark.skipif(REASON is not None, reason=f"tflite unavailable: {REASON}")

# Static shapes for the samples (dynamic dims fixed; unet3d's two inputs are tied).
SAMPLE_SHAPES = {
    "seed_example": {"x": [1, 1, 4, 4]},
    "dcgan_generator": {"z": [1, 16, 1, 1]},
    "autoencoder": {"x": [1, 1, 28, 28]},
    "unet_decoder": {"x": [1, 3, 64, 48]},
    "enet_decoder": {"x": [1, 32, 12, 16]},
    "hifigan_upsampler": {"mel": [1, 16, 40]},
    "unet3d_upblock": {"x": [1, 16, 4, 6, 5], "skip": [1, 8, 8, 12, 10]},
    "grouped_upsampler": {"x": [1, 8, 12, 16]},
}
FORMS = {
    "CRD": ConvertOptions(strategy="depth_to_space", order="CRD"),
    "DCR": ConvertOptions(strategy="depth_to_space", order="DCR"),
    "reshape": ConvertOptions(strategy="depth_to_space", shuffle="reshape"),
    "default": ConvertOptions(target="onnxruntime"),
    "transpose": ConvertOptions(strategy="transpose"),
}


def feeds_for(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}


def max_excess(ref_path, compiled, feeds):
    """Largest |tflite - ORT(original)| beyond 1e-3 abs + 1e-3 rel (<= 0: within tolerance)."""
    sess = ort.InferenceSession(ref_path, providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)
    out = compiled.run(feeds)
    excess = []
    for name, r in zip(compiled.output_names, ref):
        assert out[name].shape == r.shape, (name, out[name].shape, r.shape)
        excess.append(float(np.max(np.abs(out[name] - r) - (1e-3 + 1e-3 * np.abs(r)))))
    return max(excess)


def convert_form(name, form, tmp_path):
    """The sample converted by deconv2sub in ``form`` (checked on ORT by convert_model itself)."""
    model, report = deconv2sub.convert_model(os.path.join(SAMPLES_DIR, f"{name}.onnx"),
                                             FORMS[form])
    assert all(n.status == "rewritten" for n in report.nodes)
    path = str(tmp_path / f"{name}_{form}.onnx")
    onnx.save(model, path)
    return path


# --- the runner's own helpers (no toolchain needed) ---------------------------------------------


def test_layout_candidates_by_shape():
    assert tflite_worker.candidate_perms([1, 3, 4, 5], [1, 4, 5, 3]) == [[0, 2, 3, 1]]
    assert tflite_worker.candidate_perms([1, 3, 4, 5], [1, 3, 4, 5]) == [[0, 1, 2, 3]]
    # C == H == W: both readings fit, so the worker must decide by a probe run
    assert tflite_worker.candidate_perms([1, 4, 4, 4], [1, 4, 4, 4]) == [[0, 1, 2, 3],
                                                                         [0, 2, 3, 1]]
    assert tflite_worker.candidate_perms([1, 8, 20], [1, 20, 8]) == [[0, 2, 1]]
    assert tflite_worker.candidate_perms([1, 8, 20], [1, 8, 21]) == []
    assert tflite_worker.candidate_perms([2, 6], [2, 6]) == [[0, 1]]


def test_converter_key_message_is_the_last_error_line():
    log = "INFO: step 1\nValueError: Dimensions must be equal\n  File \"x.py\", line 3\nbye\n"
    assert tflite_worker.last_error_line(log) == "ValueError: Dimensions must be equal"
    assert tflite_worker.last_error_line("only\nlines\n") == "lines"


def test_unavailable_reason_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(tflite.ENV_PYTHON, str(tmp_path / "no-such-python"))
    reason = tflite.unavailable_reason()
    assert reason is not None and "does not exist" in reason and "tflite.sh" in reason


# --- through the toolchain ----------------------------------------------------------------------


@needs_tflite
def test_seed_example_dcr_form_maps_to_native_depth_to_space(tmp_path):
    src = os.path.join(SAMPLES_DIR, "seed_example.onnx")
    shapes = SAMPLE_SHAPES["seed_example"]
    feeds = feeds_for(shapes)
    path = convert_form("seed_example", "DCR", tmp_path)
    before = open(path, "rb").read()
    converted = tflite.compile(path, shapes, str(tmp_path / "dcr"))
    assert open(path, "rb").read() == before  # onnx2tf simplifies its input in place: a copy
    assert "DEPTH_TO_SPACE" in converted.ops and "TRANSPOSE_CONV" not in converted.ops
    assert converted.partitions == 1 and converted.outside_xnnpack == []
    assert converted.input_perm == {"x": [0, 2, 3, 1]}
    assert max_excess(src, converted, feeds) <= 0
    times = tflite.benchmark([converted], [feeds], samples=5, warmup_s=0.05)
    assert len(times) == 1 and times[0] > 0


@needs_tflite
@pytest.mark.slow
def test_original_and_converted_time_interleaved_in_one_worker(tmp_path):
    src = os.path.join(SAMPLES_DIR, "seed_example.onnx")
    shapes = SAMPLE_SHAPES["seed_example"]
    feeds = feeds_for(shapes)
    original = tflite.compile(src, shapes, str(tmp_path / "orig"))
    assert "TRANSPOSE_CONV" in original.ops
    assert max_excess(src, original, feeds) <= 0
    converted = tflite.compile(convert_form("seed_example", "CRD", tmp_path), shapes,
                               str(tmp_path / "crd"))
    assert "DEPTH_TO_SPACE" not in converted.ops  # CRD: onnx2tf emits Reshape/Transpose
    times = tflite.benchmark([original, converted], [feeds, feeds], samples=5, warmup_s=0.05)
    assert len(times) == 2 and all(t > 0 for t in times)


@needs_tflite
def test_not_an_onnx_file_is_a_one_line_toolchain_error(tmp_path):
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
    ("unet3d_upblock", "CRD"): RANK8,
    ("unet3d_upblock", "DCR"): RANK8,
    ("unet3d_upblock", "reshape"): RANK8,
    ("unet3d_upblock", "transpose"): RANK8,
    ("unet3d_upblock", "default"): "Gather + Gemm + Conv3d form: wrong numbers (error 0.6); the "
                                   "ORIGINAL ConvTranspose3d is wrong on LiteRT too (0.02)",
}


def _sample_cases():
    for name in sorted(SAMPLE_SHAPES):
        for form in FORMS:
            marks = [pytest.mark.slow]
            if (name, form) in KNOWN_WRONG:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_WRONG[name, form]))
            yield pytest.param(name, form, marks=marks, id=f"{name}-{form}")


@needs_tflite
@pytest.mark.parametrize("name,form", list(_sample_cases()))
def test_sample_form_matches_ort_on_the_original(name, form, tmp_path):
    shapes = SAMPLE_SHAPES[name]
    src = os.path.join(SAMPLES_DIR, f"{name}.onnx")
    path = convert_form(name, form, tmp_path)  # as the CLI does: dynamic dims stay dynamic
    compiled = tflite.compile(path, shapes, str(tmp_path / "w"))
    assert "TRANSPOSE_CONV" not in compiled.ops
    assert max_excess(src, compiled, feeds_for(shapes)) <= 0


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
}


@needs_tflite
@pytest.mark.slow
@pytest.mark.parametrize("repro", sorted(REPROS))
@pytest.mark.xfail(strict=True, reason="upstream onnx2tf/LiteRT bug, see the repro README")
def test_repro_still_fails(repro, tmp_path):
    path = os.path.join(REPRO_DIR, repro)
    model = onnx.load(path)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in model.graph.input}
    compiled = tflite.compile(path, shapes, str(tmp_path / "w"))
    assert max_excess(path, compiled, feeds_for(shapes)) <= 0


def test_every_repro_is_documented():
    files = sorted(f for f in os.listdir(REPRO_DIR) if f.endswith(".onnx"))
    assert files == sorted(REPROS)
    readme = open(os.path.join(REPRO_DIR, "README.md")).read()
    assert all(f in readme for f in files)
