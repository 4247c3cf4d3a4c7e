"""deconv2sub.targets.conformance: what of a graph a target profile forbids, read off the graph."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from builders import REPO_ROOT, convtranspose_model
from onnx import TensorProto, helper, numpy_helper

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.targets import TARGET_NAMES, resolve
from deconv2sub.targets.conformance import violations

SAMPLES = sorted(f for f in os.listdir(os.path.join(REPO_ROOT, "samples")) if f.endswith(".onnx"))


def _graph(nodes, inits=(), x_shape=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "g", [x], [y], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _shape(name, dims):
    return numpy_helper.from_array(np.array(dims, np.int64), name)


@pytest.mark.parametrize(
    "model, target, expected",
    [
        (_graph([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="DCR")]),
         "ncnn", ["DepthToSpace DCR: target ncnn takes CRD"]),
        (_graph([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD")]),
         "ncnn", []),
        (_graph([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=4, mode="DCR")]),
         "ethos-n", ["DepthToSpace block 4 > max_block 2"]),
        (_graph([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="DCR")]),
         "ethos-u", ["DepthToSpace DCR: target ethos-u takes none"]),
        (_graph([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 4, 2, 5, 3])]),
         "portable", ["Transpose of rank 6 > max_rank 4"]),
        (_graph([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 4, 2, 5, 3])]),
         "onnxruntime", []),
        (_graph([helper.make_node("Reshape", ["x", "s"], ["y"])], [_shape("s", [1, 2, 3, 4, 5])]),
         "portable", ["Reshape to rank 5 > max_rank 4"]),
        # back to the rank of the model's own input (a 3-D shuffle's last step): allowed
        (_graph([helper.make_node("Reshape", ["x", "s"], ["y"])], [_shape("s", [1, 2, 3, 4, 5])],
                x_shape=[1, 2, 3, 4, 5]), "portable", []),
        (_graph([helper.make_node("Reshape", ["x", "s"], ["y"])],
                [_shape("s", [1, 2, 3, 4, 5, 1])], x_shape=[1, 2, 3, 4, 5]),
         "portable", ["Reshape to rank 6 > max_rank 4"]),
        (_graph([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 3, 2, 4])],
                x_shape=[1, 2, 3, 4, 5]), "portable", ["Transpose of rank 5 > max_rank 4"]),
        (_graph([helper.make_node("Gather", ["x", "i"], ["y"], axis=1, name="g")],
                [_shape("i", [1, 0])]),
         "portable", ["Gather g: target portable has none"]),
        (_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="m")],
                [numpy_helper.from_array(np.ones((2, 2), np.float32), "w")]),
         "tflite", ["Gemm m: target tflite has none"]),
        (_graph([helper.make_node("Shape", ["x"], ["s"]),
                 helper.make_node("Reshape", ["x", "s"], ["y"])]),
         "ethos-u", ["run-time Shape arithmetic: target ethos-u has static shapes only"]),
    ],
)
def test_violations_of_hand_built_graphs(model, target, expected):
    """Each forbidden op is named once, allowed ones are not."""
    assert violations(resolve(target), model) == expected


def test_phase_convs_need_the_profile_flag():
    """Two Convs joined by a Concat are phase Convs: refused where ``phase_convs`` is off."""
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    m = _graph([helper.make_node("Conv", ["x", "w"], ["a"]),
                helper.make_node("Conv", ["x", "w"], ["b"]),
                helper.make_node("Concat", ["a", "b"], ["y"], axis=1)], [w])
    assert violations(resolve("portable"), m) == [
        "phase Convs joined by Concat: target portable has phase_convs off"]
    assert violations(resolve("onnxruntime"), m) == []


@pytest.mark.parametrize("strategy", ["depth_to_space_3d", "low_rank_transpose"])
def test_static_3d_shuffles_fit_portable(strategy):
    """The rank-4 3-D shuffles of static sizes fit portable, their last Reshape (rank 5) too."""
    w = np.random.default_rng(0).standard_normal((4, 2, 2, 2, 2)).astype(np.float32)
    model = convtranspose_model([1, 4, 2, 3, 3], w, None, strides=[2, 2, 2])
    converted, report = deconv2sub.convert_model(model, ConvertOptions(strategy=strategy))
    assert report.nodes[0].strategy == strategy
    assert violations(resolve("portable"), converted, original=model) == []


@pytest.mark.parametrize("target", ["portable", "ncnn", "mnn", "tflite", "iree", "rknn",
                                    "ethos-u", "ethos-n", "vivante", "kneron"])
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_sample_converted_for_a_target_fits_it(sample, target):
    """The default output for a profile stays within that profile (beyond the original's ops)."""
    assert target in TARGET_NAMES
    model = onnx.load(os.path.join(REPO_ROOT, "samples", sample))
    converted, _ = deconv2sub.convert_model(model, ConvertOptions(target=target))
    assert violations(resolve(target), converted, original=model) == []
