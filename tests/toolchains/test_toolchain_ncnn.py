"""Ncnn through pnnx: the accepted rewrite forms match ONNX Runtime on the ORIGINAL sample.

The forms and ops ncnn rejects or computes wrong are strict xfails and repros (so an upstream fix
shows). Skipped when pnnx/ncnn are not installed (.ci/toolchains/ncnn.sh installs them). Measured
table and findings: benchmarks/toolchains/ncnn.md.
"""

from __future__ import annotations

import os
import shutil

import onnx
import pytest
from toolchain_cases import ALL_FORMS, NCNN3D, SAMPLE_SHAPES, convtranspose3d_block
from toolchain_checks import (
    check_converted,
    check_sample,
    convert_sample,
    repro_error,
    repro_paths,
    sample_params,
    sample_path,
    toolchain_error,
)

from deconv2sub import ConvertOptions
from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains import ncnn as tc

pytestmark = pytest.mark.skipif(tc.unavailable_reason() is not None,
                                reason=str(tc.unavailable_reason()))

#: forms that ncnn converts and computes right, per sample, as measured (benchmarks/toolchains/
#: ncnn.md): DCR has no ncnn layer, Reshape of rank >= 5 neither (transpose form, every 3-D form
#: here; the portable one, depth_to_space_3d, converts: test_portable_3d_...), and the Gather of the
#: default form is turned into a wrong Crop where it occurs
ACCEPTED = {
    "seed_example": ["original", "crd", "reshape", "transpose"],
    "dcgan_generator": ["original", "crd", "reshape"],
    "autoencoder": ["original", "crd", "reshape", "default"],
    "unet_decoder": ["original", "crd", "reshape", "default"],
    "enet_decoder": ["original", "crd", "reshape", "default"],
    "hifigan_upsampler": ["original", "crd", "dcr", "reshape", "default", "transpose"],
    "unet3d_upblock": ["original"],
    "grouped_upsampler": ["original", "crd", "dcr", "reshape"],
}
REJECTED = pytest.mark.xfail(strict=True, raises=(ToolchainError, AssertionError),
                             reason="ncnn rejects the form or computes it wrong (ncnn.md)")

#: the quick default run: one per kind of shuffle (2-D DepthToSpace, 2-D and 1-D Reshape)
FAST = [("seed_example", "crd"), ("dcgan_generator", "reshape"), ("hifigan_upsampler", "reshape")]


@pytest.mark.parametrize("sample,form", sample_params(FAST, {
    (s, f): REJECTED for s, forms in ACCEPTED.items() for f in ALL_FORMS if f not in forms}))
def test_sample_form_matches_ort_on_the_original(sample, form, tmp_path):
    """The accepted forms match ORT on the original; the others still fail (strict xfail)."""
    check_sample(tc, sample, form, tmp_path)


def test_depth_to_space_crd_maps_to_pixelshuffle(tmp_path):
    """The CRD form's DepthToSpace becomes ncnn's PixelShuffle, with no Reshape/Permute."""
    path = convert_sample("seed_example", "crd", tmp_path)
    ops = tc.compile(path, SAMPLE_SHAPES["seed_example"], str(tmp_path / "w")).ops
    assert ops == ["Input", "Convolution", "PixelShuffle", "Crop"]


def test_depth_to_space_3d_sample_is_conv3d_permute_pixelshuffle(tmp_path):
    """unet3d in the depth_to_space_3d form (run-time Reshape targets) matches on ncnn.

    Pnnx folds the shape arithmetic at the given input shape; the shuffle is Reshape, Permute,
    Reshape, PixelShuffle, Reshape (portable's rank-4 cascade is rejected: its repro).
    """
    check_sample(tc, "unet3d_upblock", "ncnn3d", tmp_path)
    path = convert_sample("unet3d_upblock", "ncnn3d", tmp_path)
    ops = tc.compile(path, SAMPLE_SHAPES["unet3d_upblock"], str(tmp_path / "w2")).ops
    assert ops[:8] == ["Input", "Input", "Convolution3D", "Reshape", "Permute", "Reshape",
                       "PixelShuffle", "Reshape"], ops


@pytest.mark.parametrize("kernel,stride,pad,bn_relu", [
    (2, 2, 0, False), (2, 2, 0, True), (4, 2, 1, True), (3, 3, 1, False)])
def test_depth_to_space_3d_block_matches_ort_on_the_original(kernel, stride, pad, bn_relu,
                                                            tmp_path):
    """Static 3-D blocks in the depth_to_space_3d form (BN + ReLU sunk) match on ncnn."""
    model, feeds = convtranspose3d_block(kernel, stride, pad, bn_relu)
    ops = check_converted(tc, model, feeds, ConvertOptions(target=NCNN3D), tmp_path)
    assert "PixelShuffle" in ops and "Deconvolution3D" not in ops, ops


def test_batch_above_one_is_refused(tmp_path):
    """Ncnn has no batch axis: a batch of 2 is refused by name."""
    with pytest.raises(ToolchainError, match="batch 1"):
        tc.compile(sample_path("dcgan_generator"), {"z": [2, 16, 1, 1]}, str(tmp_path))


def test_missing_input_shape_is_refused(tmp_path):
    """An input without a static shape is named in the error."""
    with pytest.raises(ToolchainError, match="static shape for input 'z'"):
        tc.compile(sample_path("dcgan_generator"), {}, str(tmp_path))


def test_not_an_onnx_file_is_one_line_error(tmp_path):
    """A file pnnx cannot read is a one-line ToolchainError."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ToolchainError) as info:
        tc.compile(str(bad), {"x": [1, 1, 4, 4]}, str(tmp_path / "w"))
    assert "\n" not in str(info.value)


def test_model_folder_is_left_alone(tmp_path):
    """Pnnx writes its files in the work directory, never next to the model."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sample_path("seed_example"), src / "m.onnx")
    compiled = tc.compile(str(src / "m.onnx"), SAMPLE_SHAPES["seed_example"], str(tmp_path / "w"))
    assert sorted(os.listdir(src)) == ["m.onnx"]
    assert all(os.path.isfile(p) for p in compiled.artifacts)


@pytest.mark.parametrize("path", repro_paths("ncnn"), ids=os.path.basename)
@pytest.mark.xfail(strict=True, raises=(ToolchainError, AssertionError),
                   reason="ncnn bug/limitation kept as a repro (tests/toolchain_repros/ncnn)")
def test_repro_still_fails_on_ncnn(path, tmp_path):
    """Each repro is still wrong or rejected on ncnn (an upstream fix XPASSes)."""
    err, ok = repro_error(tc, path, str(tmp_path))
    assert ok, f"max abs error {err}"


def test_model_with_external_data_converts(tmp_path):
    """A model with external data converts and matches ORT on the original.

    Pnnx is handed a copy in its workdir: the weights must travel with it (pnnx crashed with
    "External data path validation failed" when only the .onnx file was copied).
    """
    model = onnx.load(convert_sample("seed_example", "crd", tmp_path))
    path = tmp_path / "ext" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data",
              size_threshold=0)
    assert (path.parent / "m.onnx.data").is_file()
    err, ok = toolchain_error(tc, str(path), "seed_example", str(tmp_path / "w"))
    assert ok, f"max abs error {err} against ORT on the original"
