"""ncnn through pnnx: the rewrite forms that ncnn accepts match ONNX Runtime on the ORIGINAL
sample; the forms and ops it rejects or computes wrong are kept as repros (xfail strict, so an
upstream fix shows). Skipped when pnnx/ncnn are not installed (.ci/toolchains/ncnn.sh installs
them). Measured table and findings: benchmarks/toolchains/ncnn.md.
"""

from __future__ import annotations

import os
import shutil

import pytest
from toolchain_repro_cases import repro_paths, static_input_shapes
from toolchain_samples import (
    SAMPLE_SHAPES,
    feeds_for,
    form_file,
    matches,
    max_errors,
    ort_outputs,
    sample_path,
)

from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains import ncnn as tc

pytestmark = pytest.mark.skipif(tc.unavailable_reason() is not None,
                                reason=str(tc.unavailable_reason()))

#: forms that ncnn converts and computes right, per sample, as measured (benchmarks/toolchains/
#: ncnn.md): DCR has no ncnn layer, Reshape of rank >= 5 neither (transpose form, every 3-D form),
#: and the Gather of the default form is turned into a wrong Crop where it occurs
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

#: the quick default run: one per kind of shuffle (2-D DepthToSpace, 2-D and 1-D Reshape)
FAST = [("seed_example", "crd"), ("dcgan_generator", "reshape"), ("hifigan_upsampler", "reshape")]


def run_on_ncnn(path: str, shapes, workdir: str):
    feeds = feeds_for(shapes)
    return tc.compile(path, shapes, workdir).run(feeds), feeds


def check_sample(name: str, form: str, tmp_path) -> None:
    shapes = SAMPLE_SHAPES[name]
    got, feeds = run_on_ncnn(form_file(name, form, str(tmp_path)), shapes, str(tmp_path / "w"))
    want = ort_outputs(sample_path(name), feeds)
    assert matches(got, want), max_errors(got, want)


@pytest.mark.parametrize("name,form", FAST)
def test_form_matches_ort_on_the_original(name, form, tmp_path):
    check_sample(name, form, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name,form", [(n, f) for n, forms in ACCEPTED.items() for f in forms
                                       if (n, f) not in FAST])
def test_every_accepted_form_matches_ort(name, form, tmp_path):
    check_sample(name, form, tmp_path)


def test_depth_to_space_crd_maps_to_pixelshuffle(tmp_path):
    path = form_file("seed_example", "crd", str(tmp_path))
    ops = tc.compile(path, SAMPLE_SHAPES["seed_example"], str(tmp_path / "w")).ops
    assert ops == ["Input", "Convolution", "PixelShuffle", "Crop"]


def test_batch_above_one_is_refused(tmp_path):
    with pytest.raises(ToolchainError, match="batch 1"):
        tc.compile(sample_path("dcgan_generator"), {"z": [2, 16, 1, 1]}, str(tmp_path))


def test_missing_input_shape_is_refused(tmp_path):
    with pytest.raises(ToolchainError, match="static shape for input 'z'"):
        tc.compile(sample_path("dcgan_generator"), {}, str(tmp_path))


def test_not_an_onnx_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ToolchainError) as info:
        tc.compile(str(bad), {"x": [1, 1, 4, 4]}, str(tmp_path / "w"))
    assert "\n" not in str(info.value)


def test_model_folder_is_left_alone(tmp_path):
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
    got, feeds = run_on_ncnn(path, static_input_shapes(path), str(tmp_path))
    want = ort_outputs(path, feeds)
    assert matches(got, want), max_errors(got, want)


def test_model_with_external_data_converts(tmp_path):
    # pnnx is handed a copy in its workdir: the weights must travel with it (pnnx crashed with
    # "External data path validation failed" when only the .onnx file was copied)
    import onnx

    model = onnx.load(form_file("seed_example", "crd", str(tmp_path)))
    path = tmp_path / "ext" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data",
              size_threshold=0)
    assert (path.parent / "m.onnx.data").is_file()
    shapes = SAMPLE_SHAPES["seed_example"]
    got, feeds = run_on_ncnn(str(path), shapes, str(tmp_path / "w"))
    want = ort_outputs(sample_path("seed_example"), feeds)
    assert matches(got, want), max_errors(got, want)
