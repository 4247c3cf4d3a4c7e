"""Rockchip RKNN-Toolkit2 as a target: load_onnx + build for the RK3588, run on its simulator.

Skipped with the reason when rknn-toolkit2 is not importable here and ``DECONV2SUB_RKNN_PYTHON``
does not name an interpreter that has it (``.ci/toolchains/rknn.sh VENV``). Every sample, converted
with ``--target portable`` and with ``--target rknn``, goes through RKNN's own builder and must
match ONNX Runtime running the ORIGINAL sample, within float16 tolerances (the RK3588 computes in
float16; :data:`deconv2sub.toolchains.rknn.TOLERANCES`), and be no further from it than the
original model is on RKNN. The form RKNN gets wrong is pinned as a strict xfail.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
from toolchain_cases import SAMPLE_SHAPES, all_cases, close, ort_outputs, unknown_op_model
from toolchain_checks import REPROS_DIR, convert_sample, sample_params, sample_path, toolchain_error

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.toolchains import ToolchainError
from deconv2sub.toolchains import rknn as toolchain

REASON = toolchain.unavailable_reason()
needs_rknn = pytest.mark.skipif(REASON is not None, reason=f"RKNN unavailable: {REASON}")
REPROS = os.path.join(REPROS_DIR, "rknn")
RTOL, ATOL = toolchain.TOLERANCES

#: built in the default run (2-4 s each on 2 cores: a 2-D, a 1-D and a 3-D sample); the rest slow
QUICK = ("seed_example", "hifigan_upsampler", "unet3d_upblock")
TARGETS = ("portable", "rknn")
#: op cases in the default run; the rest are marked slow
QUICK_CASES = ("d2s_CRD_b2", "d2s_DCR_b4", "shuffle1d", "shuffle3d", "slice_crop")
WRONG_3D = ("RKNN-Toolkit2 2.5.0: a 3-D Conv whose output is split by a Reshape, interleaved by a "
            "rank-6 Transpose and merged by a Reshape comes out permuted at 2x2x2 spatial (right "
            "values, wrong places): tests/toolchain_repros/rknn")


@needs_rknn
@pytest.mark.parametrize("sample,target", sample_params(
    [(s, t) for s in QUICK for t in TARGETS], forms=TARGETS))
def test_sample_matches_ort_on_rknn(sample, target, tmp_path):
    """The portable default and the rknn profile of every sample are right on RKNN.

    Each builds, matches ORT on the original within float16 tolerances, and is no further from it
    than the original is on RKNN.
    """
    err, ok = toolchain_error(toolchain, convert_sample(sample, target, tmp_path), sample,
                              str(tmp_path / "rknn"), rtol=RTOL, atol=ATOL)
    assert ok, f"{sample} {target}: max abs error {err} against ORT on the original"
    err_orig, ok_orig = toolchain_error(toolchain, sample_path(sample), sample,
                                        str(tmp_path / "rknn_original"), rtol=RTOL, atol=ATOL)
    assert ok_orig, f"{sample} original on RKNN: max abs error {err_orig}"
    assert err <= 2 * err_orig + 1e-4, f"{sample} {target}: {err} vs the original's {err_orig}"


@needs_rknn
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[] if n.startswith(QUICK_CASES) else [pytest.mark.slow])
    for n in all_cases()])
def test_op_case_matches_ort_on_rknn(name, tmp_path):
    """Every op case is exact on RKNN to float16 accuracy.

    The cases: DepthToSpace (both modes, b 2-8), Reshape/Transpose up to rank 8, Slice, Concat,
    Gather, Gemm and a 1x1-input ConvTranspose.
    """
    model, feeds = all_cases()[name]()
    path = str(tmp_path / "case.onnx")
    onnx.save(model, path)
    compiled = toolchain.compile(path, {k: list(v.shape) for k, v in feeds.items()}, str(tmp_path))
    err, ok = close(compiled.run(feeds), ort_outputs(model, feeds), RTOL, ATOL)
    assert ok, f"{name}: max abs error {err}"


def _repro(tmp_path, path, shape):
    """(max abs error, within RKNN's tolerances) of a one-input repro on RKNN vs ORT."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    compiled = toolchain.compile(path, {"X": list(shape)}, str(tmp_path))
    return close(compiled.run({"X": x}), ort_outputs(onnx.load(path), {"X": x}), RTOL, ATOL)


@needs_rknn
@pytest.mark.xfail(strict=True, reason=WRONG_3D)
def test_repro_conv3d_reshape_rank6_transpose(tmp_path):
    """The 3-D two-stage shuffle of ``--target onnxruntime`` is wrong on RKNN (strict xfail).

    The graph: Conv3d (1x1x1, 2 -> 16) -> Reshape [4,2,2,2,2,2] -> Transpose [0,3,1,4,2,5] ->
    Reshape [1,2,64]. When upstream fixes it, this XPASSes and fails strict.
    """
    err, ok = _repro(tmp_path, os.path.join(REPROS, "conv3d_reshape_rank6_transpose_wrong.onnx"),
                     (1, 2, 2, 2, 2))
    assert ok, f"max abs error {err}"


@needs_rknn
def test_repro_without_the_merge_is_exact(tmp_path):
    """The same graph without its last Reshape is exact.

    With the Transpose's output as the graph output the order is right: the wrong order comes from
    the builder's fusion of the whole chain into the Conv.
    """
    model = onnx.load(os.path.join(REPROS, "conv3d_reshape_rank6_transpose_wrong.onnx"))
    merge = model.graph.node[-1]
    model.graph.node.remove(merge)
    model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(
        merge.input[0], onnx.TensorProto.FLOAT, [4, 2, 2, 2, 2, 2]))
    path = str(tmp_path / "no_merge.onnx")
    onnx.save(model, path)
    err, ok = _repro(tmp_path, path, (1, 2, 2, 2, 2))
    assert ok, f"max abs error {err}"


@needs_rknn
def test_cpu_placements_are_reported(tmp_path):
    """The builder's CPU placements reach ``Compiled.notes``.

    The autoencoder's portable form runs wholly on the NPU, its two-stage Transpose form
    (``--strategy transpose``) puts layers on the CPU.
    """
    notes = {}
    for name, options in (("portable", ConvertOptions(target="portable")),
                          ("transpose", ConvertOptions(strategy="transpose"))):
        model, _ = deconv2sub.convert_model(sample_path("autoencoder"), options)
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(model, path)
        compiled = toolchain.compile(path, SAMPLE_SHAPES["autoencoder"], str(tmp_path / name))
        notes[name] = [n for n in compiled.notes if n.startswith("on CPU:")]
    assert notes["portable"] == []
    assert any("Transpose" in n for n in notes["transpose"]), notes["transpose"]
    # load_onnx writes check*.onnx files into its current directory: the work directory, not here
    assert glob.glob(str(tmp_path / "portable" / "check*.onnx"))
    assert not glob.glob(os.path.join(os.getcwd(), "check*_*.onnx"))


@needs_rknn
def test_converter_failure_is_one_line_toolchain_error(tmp_path):
    """An op the builder does not know raises ToolchainError with one line, no traceback."""
    path = str(tmp_path / "unknown_op.onnx")
    onnx.save(unknown_op_model(), path)
    with pytest.raises(ToolchainError) as info:
        toolchain.compile(path, {"X": [1, 2]}, str(tmp_path))
    assert "\n" not in str(info.value) and str(info.value).startswith("RKNN")


LOG = """\
E RKNN: [12:17:34.903] Unkown op target: 0
W RKNN: [12:17:34.903] LayoutMatchManager: recursion_depth=3, Logic is Dangerous, Will Force \
layout to native.
D RKNN: [12:17:34.904]                  Network Layer Information Table
D RKNN: [12:17:34.904] ID   OpType             DataType Target InputShape      OutputShape  \
Cycles(DDR/NPU/Total)    RW(KB)       FullName
D RKNN: [12:17:34.904] 0    InputOperator      FLOAT16  CPU    \\               (1,16,2,2,2) \
0/0/0                    0            InputOperator:x
D RKNN: [12:17:34.904] 2    Reshape            FLOAT16  CPU    (1,16,2,2,2),(4) (1,32,2,2)  \
0/0/0                    0            Reshape:x_rs
D RKNN: [12:17:34.904] 3    Conv               FLOAT16  NPU    (1,32,2,2)       (1,64,4,4)  \
801/256/801              16           Conv:c
D RKNN: [12:17:34.904] 9    OutputOperator     FLOAT16  CPU    (1,8,4,4,4)      \\          \
0/0/0                    1            OutputOperator:y
D RKNN: [12:17:34.904] <<<<<<<< end: rknn::RKNNModelRegCmdbuildPass
D RKNN: [12:17:35.000] 7    Transpose          FLOAT16  CPU    after the table: not a layer
"""


def test_placement_notes_parse_the_layer_table():
    """CPU layers of the layer table and the placement messages become notes (needs no RKNN).

    The input/output operators and lines after the table are left out.
    """
    assert toolchain.placement_notes(LOG) == [
        "Unkown op target: 0",
        "LayoutMatchManager: recursion_depth=3, Logic is Dangerous, Will Force layout to native.",
        "on CPU: Reshape Reshape:x_rs",
    ]


def test_known_bug_warns_for_the_3d_two_stage_shuffle_only():
    """``--toolchain rknn`` warns on the 3-D two-stage shuffle only (needs no RKNN).

    It warns on the repro (2x2x2, not 3x3x3) and on unet3d's ``--target onnxruntime`` output (3-D
    two-stage shuffle, symbolic sizes), not on its portable or rknn output, nor on a 2-D sample.
    """
    from deconv2sub.targets import ALL_BUGS
    from deconv2sub.targets.bugs import find_hits

    repro = onnx.load(os.path.join(REPROS, "conv3d_reshape_rank6_transpose_wrong.onnx"))
    (hit,) = find_hits(repro, ["rknn"], ALL_BUGS)
    assert hit.node == "conv3d" and "rank 6" in hit.detail
    repro.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 3  # 3x2x2: a dim of 2 left
    assert len(find_hits(repro, ["rknn"], ALL_BUGS)) == 1
    for dim in repro.graph.input[0].type.tensor_type.shape.dim[3:]:
        dim.dim_value = 3  # 3x3x3: measured right
    assert find_hits(repro, ["rknn"], ALL_BUGS) == []
    for sample, target, hits in (("unet3d_upblock", "onnxruntime", 1),
                                 ("unet3d_upblock", "portable", 0), ("unet3d_upblock", "rknn", 0),
                                 ("dcgan_generator", "onnxruntime", 0)):
        _, report = deconv2sub.convert_model(
            sample_path(sample), ConvertOptions(target=target, toolchains=("rknn",)))
        assert len(report.toolchain_warnings) == hits, (sample, target, report.toolchain_warnings)
