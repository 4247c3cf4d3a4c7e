"""Known toolchain bugs found in graphs (``convert --toolchain``), without the toolchains.

TVM 0.27's Relax ONNX importer refuses a ``Slice`` of a ``Shape`` fed into ``Mul`` when dims are
symbolic (``tests/toolchain_repros/tvm/shape_arithmetic.onnx``; ``tests/test_toolchain_tvm.py``
runs it on TVM). The rewrite builds its run-time shapes from scalar ``Gather`` + ``Unsqueeze``
instead, so ``--toolchain tvm`` must flag the repro and not the rewrite's own output. onnx2tf
concatenates a shuffle result whose channel count equals a spatial size on the wrong axis
(``tests/toolchain_repros/tflite/concat_after_3d_shuffle.onnx``): ``--toolchain tflite`` flags it.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from builders import assert_equivalent, convtranspose_model, op_types
from toolchain_checks import REPROS_DIR

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.targets import ALL_BUGS, TargetProfile
from deconv2sub.targets.bugs import find_hits

REPRO = os.path.join(REPROS_DIR, "tvm",
                     "shape_arithmetic.onnx")


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_repro_hits_the_tvm_shape_bug():
    """``--toolchain tvm`` flags the repro's Slice of Shape into Mul."""
    hits = find_hits(onnx.load(REPRO), ["tvm"], ALL_BUGS)
    assert [(h.op, h.detail) for h in hits] == [("Slice", "Slice of Shape into Mul")]


def test_symbolic_3d_output_builds_shapes_tvm_imports():
    """3-D with every size symbolic: shapes from scalar Gathers of the Shape, no TVM warning.

    The portable form (depth_to_space_3d) computes its Reshape shapes at run time; the output is
    exact on ONNX Runtime at two shapes.
    """
    m = convtranspose_model(["N", 4, "D", "H", "W"], _x((4, 2, 4, 4, 4)), None, strides=[2] * 3,
                            pads=[1] * 6)
    converted, report = deconv2sub.convert_model(m, ConvertOptions(toolchains=("tvm",)))
    assert report.rewritten and not report.toolchain_warnings
    ops = op_types(converted)
    assert "Shape" in ops and "Unsqueeze" in ops
    producers = {o: n for n in converted.graph.node for o in n.output}
    for node in converted.graph.node:
        if node.op_type == "Gather":  # only dims of the Shape, each with a scalar index
            assert producers[node.input[0]].op_type == "Shape"
            index = next(i for i in converted.graph.initializer if i.name == node.input[1])
            assert onnx.numpy_helper.to_array(index).ndim == 0
    for shape in [(1, 4, 2, 3, 4), (2, 4, 3, 3, 2)]:
        assert_equivalent(m, converted, {"X": _x(shape, 1)})


def test_tvm_target_rewrites_symbolic_unequal_strides():
    """The tvm profile rewrites unequal strides with symbolic sizes (run-time shapes allowed)."""
    m = convtranspose_model(["N", 2, "H", "W"], _x((2, 3, 4, 6)), None, strides=[2, 3],
                            pads=[1, 1, 1, 1])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="tvm"))
    assert report.rewritten and "ConvTranspose" not in op_types(converted)
    for shape in [(1, 2, 3, 5), (2, 2, 4, 4)]:
        assert_equivalent(m, converted, {"X": _x(shape, 1)})


def test_tflite_concat_after_ambiguous_shuffle_is_flagged():
    """``--toolchain tflite`` flags the Concat of a shuffle result whose channels equal a size."""
    path = os.path.join(os.path.dirname(REPRO), "..", "tflite", "concat_after_3d_shuffle.onnx")
    hits = find_hits(onnx.load(path), ["tflite"], ALL_BUGS)
    assert [h.op for h in hits] == ["Concat"] and "[1, 8, 6, 8, 10]" in hits[0].detail


def test_tflite_depth_to_space_3d_is_flagged_and_its_profile_avoids_it():
    """``--toolchain tflite`` flags depth_to_space_3d (the repro, and a profile that takes it).

    The rank-4 cascade of the portable and tflite profiles is not flagged, nor is a 2-D
    DepthToSpace; the outputs are exact on ONNX Runtime.
    """
    path = os.path.join(REPROS_DIR, "tflite", "depth_to_space_after_3d_reshape.onnx")
    hits = find_hits(onnx.load(path), ["tflite"], ALL_BUGS)
    assert [h.op for h in hits] == ["DepthToSpace"] and "rank-5" in hits[0].detail
    m = convtranspose_model([1, 4, 2, 3, 4], _x((4, 2, 2, 2, 2)), None, strides=[2] * 3)
    ncnn3d = TargetProfile(name="ncnn3d", depth_to_space=("CRD",), depth_to_space_3d=True)
    for target, warned in ((ncnn3d, 1), ("portable", 0), ("tflite", 0)):
        converted, report = deconv2sub.convert_model(
            m, ConvertOptions(target=target, toolchains=("tflite",)))
        assert len(report.toolchain_warnings) == warned, (target, report.toolchain_warnings)
        assert_equivalent(m, converted, {"X": _x((1, 4, 2, 3, 4), 1)})
    m2 = convtranspose_model([1, 4, 3, 4], _x((4, 2, 2, 2)), None, strides=[2, 2])
    _, report = deconv2sub.convert_model(m2, ConvertOptions(toolchains=("tflite",)))
    assert not report.toolchain_warnings


def test_ncnn_flags_the_3d_cascade_reshape_and_not_its_alternatives():
    """``--toolchain ncnn`` flags the rank-4 3-D cascade (Reshape whose first dim is not 1).

    Not flagged: the repro's own check, depth_to_space_3d's Reshapes (batch first), a 1-D cascade
    and the ncnn profile's output (3-D kept). Every output is exact on ONNX Runtime.
    """
    path = os.path.join(REPROS_DIR, "ncnn", "reshape_rank4_cascade_3d_rejected.onnx")
    hits = find_hits(onnx.load(path), ["ncnn"], ALL_BUGS)
    assert hits and {h.op for h in hits} == {"Reshape"}
    m = convtranspose_model([1, 4, 2, 3, 4], _x((4, 2, 2, 2, 2)), None, strides=[2] * 3)
    ncnn3d = TargetProfile(name="ncnn3d", depth_to_space=("CRD",), depth_to_space_3d=True)
    for target, flagged in (("portable", True), (ncnn3d, False), ("ncnn", False)):
        converted, report = deconv2sub.convert_model(
            m, ConvertOptions(target=target, toolchains=("ncnn",)))
        ops = {h["op"] for h in report.toolchain_warnings}
        assert ("Reshape" in ops) == flagged, (target, report.toolchain_warnings)
        assert_equivalent(m, converted, {"X": _x((1, 4, 2, 3, 4), 2)})
    m1 = convtranspose_model([1, 4, 9], _x((4, 2, 4)), None, strides=[2], pads=[1, 1])
    _, report = deconv2sub.convert_model(m1, ConvertOptions(toolchains=("ncnn",)))
    assert not report.toolchain_warnings
