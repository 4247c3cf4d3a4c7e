"""Emission ``depth_to_space_3d``: Conv3d + rank-4 Reshape/Transpose + DepthToSpace(CRD).

What the ORT-referenced sweep (``test_emission_sweep.py``) does not look at: the exact ops and
Reshape targets (rank 4 with the batch first, the last one back to rank 5), the copied batch,
BatchNormalization + Relu sunk above the shuffle through the DCR rows, quantized weights, and the
portable rule's choice and reasons. Every conversion is checked against ONNX Runtime running the
original model.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from builders import assert_equivalent, convtranspose_model, op_types
from onnx import TensorProto, helper, numpy_helper

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.targets import TargetProfile

NAME = "depth_to_space_3d"
#: a profile that takes the form (ncnn's limits without its kept ranks); the built-in ones do not
#: (``depth_to_space_3d`` defaults to false: the rank-4 cascade is what LiteRT, MNN and IREE run)
NCNN3D = TargetProfile(name="ncnn3d", depth_to_space=("CRD",), max_rank=4, depth_to_space_3d=True)
SHUFFLE = ["Reshape", "Transpose", "Reshape", "DepthToSpace", "Reshape"]


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _attr(node, name):
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def _reshape_targets(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[1]].tolist() for n in model.graph.node if n.op_type == "Reshape"]


def _output():
    """The output Y: float, rank 5, sizes left to the runtime."""
    return helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", "c", "d", "h", "w"])


def _convert(model, **options):
    target = options.setdefault("target", NCNN3D)
    options["target"] = NCNN3D if target == "ncnn3d" else target
    converted, report = deconv2sub.convert_model(model, ConvertOptions(**options))
    onnx.checker.check_model(converted, full_check=True)
    return converted, report.nodes[0]


def test_ops_and_reshape_targets_follow_the_derivation():
    """k4 s2 p1, batch 3, M=2: Reshapes [3, 8, 2*4, 5*3], [3, 2*4*8, 5, 3], [3, 2, 8, 10, 6]."""
    m = convtranspose_model([3, 3, 3, 4, 2], _x((3, 2, 4, 4, 4)), _x((2,), 1), strides=[2, 2, 2],
                            pads=[1, 1, 1, 1, 1, 1])
    converted, node = _convert(m)
    assert node.strategy == NAME
    assert node.shuffle == "Reshape/Transpose (rank 4) + DepthToSpace(CRD)"
    assert op_types(converted) == ["Conv"] + SHUFFLE + ["Slice"]
    # Conv output: [3, 8*2, D, H, W] with D, H, W = 3+1, 4+1, 2+1 (k4 s2 p1: one more, crop 1)
    assert _reshape_targets(converted) == [[3, 8, 8, 15], [3, 64, 5, 3], [3, 2, 8, 10, 6]]
    (t,) = [n for n in converted.graph.node if n.op_type == "Transpose"]
    (d2s,) = [n for n in converted.graph.node if n.op_type == "DepthToSpace"]
    assert list(_attr(t, "perm")) == [0, 2, 1, 3]
    assert (_attr(d2s, "blocksize"), _attr(d2s, "mode")) == (2, b"CRD")
    assert_equivalent(m, converted, {"X": _x((3, 3, 3, 4, 2), 2)})


@pytest.mark.parametrize("strides", [(1, 2, 2), (3, 2, 2), (2, 3, 3)])
def test_other_depth_strides_and_blocks(strides):
    """s0 = 1 (no depth phase), s0 = 3, and a block of 3; one DepthToSpace of block s1."""
    m = convtranspose_model([1, 2, 2, 3, 3], _x((2, 3, 3, 4, 4)), _x((3,), 1),
                            strides=list(strides), pads=[1, 1, 1, 1, 1, 1])
    converted, node = _convert(m)
    assert node.strategy == NAME and op_types(converted)[1:6] == SHUFFLE
    (d2s,) = [n for n in converted.graph.node if n.op_type == "DepthToSpace"]
    assert _attr(d2s, "blocksize") == strides[1]
    assert [len(t) for t in _reshape_targets(converted)] == [4, 4, 5]
    assert_equivalent(m, converted, {"X": _x((1, 2, 2, 3, 3), 2)})


def test_symbolic_batch_is_copied_and_one_symbolic_size_needs_no_shape_arithmetic():
    """A symbolic batch is ``0`` in every Reshape; one symbolic size is the one ``-1``."""
    w, b = _x((2, 2, 2, 2, 2)), _x((2,), 1)
    m = convtranspose_model(["N", 2, "D", 3, 4], w, b, strides=[2, 2, 2])
    converted, node = _convert(m)
    assert node.strategy == NAME and op_types(converted) == ["Conv"] + SHUFFLE
    assert _reshape_targets(converted) == [[0, 8, -1, 12], [0, -1, 3, 4], [0, 2, -1, 6, 8]]
    for shape in [(1, 2, 2, 3, 4), (3, 2, 5, 3, 4)]:
        assert_equivalent(m, converted, {"X": _x(shape, 3)})


def test_all_symbolic_sizes_need_dynamic_shapes():
    """D, H, W symbolic: run-time Reshape targets; a static-shape target refuses the node."""
    m = convtranspose_model([1, 2, "D", "H", "W"], _x((2, 2, 2, 2, 2)), None, strides=[2, 2, 2])
    converted, node = _convert(m)
    assert node.strategy == NAME and "Shape" in op_types(converted)
    for shape in [(1, 2, 2, 3, 4), (1, 2, 3, 2, 2)]:
        assert_equivalent(m, converted, {"X": _x(shape, 4)})
    _, node = _convert(m, strategy=NAME, target="kneron")  # CRD, static shapes only
    assert not node.rewritten and node.code == "shape_arithmetic"
    assert node.declined == []  # nothing written: the chain ends in the cascade's refusal


def _bn_relu_model(shape, strides, kernel, pads, seed=0):
    """ConvTranspose -> BatchNormalization -> Relu, distinct per-channel values."""
    c, m_out = shape[1], 3
    inits = [numpy_helper.from_array(_x((c, m_out, *kernel), seed), "W"),
             numpy_helper.from_array(_x((m_out,), seed + 1), "B")]
    for name, v in [("s", 1 + _x((m_out,), seed + 2)), ("b", _x((m_out,), seed + 3)),
                    ("mu", _x((m_out,), seed + 4)), ("var", 1 + np.arange(m_out) / 2)]:
        inits.append(numpy_helper.from_array(np.asarray(v, np.float32), name))
    nodes = [
        helper.make_node("ConvTranspose", ["X", "W", "B"], ["t"], strides=list(strides),
                         pads=list(pads), name="up"),
        helper.make_node("BatchNormalization", ["t", "s", "b", "mu", "var"], ["u"], name="bn"),
        helper.make_node("Relu", ["u"], ["Y"], name="relu"),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)
    g = helper.make_graph(nodes, "g", [x],
                          [_output()], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("strides,kernel,pads", [
    ((2, 2, 2), (2, 2, 2), (0,) * 6),
    ((2, 2, 2), (3, 3, 3), (1, 1, 1, 0, 0, 0)),
    ((1, 2, 2), (3, 4, 4), (1,) * 6),
    ((3, 2, 2), (3, 2, 2), (0,) * 6),
])
@pytest.mark.parametrize("batch", [1, 3])
def test_batch_norm_and_relu_move_above_the_shuffle(strides, kernel, pads, batch):
    """BN + Relu sink between the Conv and the shuffle; their values follow the DCR rows."""
    shape = [batch, 4, 2, 3, 3]
    m = _bn_relu_model(shape, strides, kernel, pads)
    converted, node = _convert(m)
    assert node.strategy == NAME and node.sunk == ["BatchNormalization bn", "Relu relu"]
    ops = op_types(converted)
    assert ops.index("Relu") < ops.index("Transpose") and ops.index("Conv") < ops.index("Relu")
    assert_equivalent(m, converted, {"X": _x(shape, 5)})


def _qdq_3d_model(shape=(1, 4, 2, 3, 3), m_out=3, kernel=(2, 3, 3)):
    """DQ(x), per-output-channel int8 DQ(w) with power-of-two scales -> ConvTranspose s2."""
    rng = np.random.default_rng(7)
    w_q = rng.integers(-60, 60, (shape[1], m_out, *kernel)).astype(np.int8)
    inits = {
        "x_scale": np.float32(2.0**-4), "x_zp": np.int8(0),
        "w_q": w_q, "w_scale": (2.0 ** -rng.integers(4, 7, m_out)).astype(np.float32),
        "w_zp": np.zeros(m_out, np.int8), "B": _x((m_out,), 8),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["X", "x_scale", "x_zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["W"], axis=1),
        helper.make_node("ConvTranspose", ["x_dq", "W", "B"], ["Y"], strides=[2, 2, 2],
                         pads=[1, 1, 1, 0, 0, 0], name="up"),
    ]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                      list(shape))],
                          [_output()],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_quantized_weight_keeps_its_dequantize():
    """A QDQ weight: the plan's DCR rows are quantized rows, the Conv reads them through a DQ."""
    m = _qdq_3d_model()
    converted, node = _convert(m)
    assert node.strategy == NAME and "DepthToSpace" in op_types(converted)
    conv = next(n for n in converted.graph.node if n.op_type == "Conv")
    producer = {o: n.op_type for n in converted.graph.node for o in n.output}
    assert producer[conv.input[1]] == "DequantizeLinear"
    assert_equivalent(m, converted, {"X": _x((1, 4, 2, 3, 3), 9)}, rel=1e-6)


@pytest.mark.parametrize("target,strides,group,opset,expected", [
    ("ncnn3d", (2, 2, 2), 1, 17,
     "target ncnn3d: Conv3d + Reshape/Transpose (rank 4) + DepthToSpace(CRD)"),
    ("ncnn3d", (2, 2, 2), 2, 17, "its DCR rows would split the groups of the grouped Conv"),
    ("ncnn3d", (2, 1, 2), 1, 17, "strides [2, 1, 2] need s1 == s2 >= 2"),
    ("ncnn3d", (2, 2, 2), 1, 10, "DepthToSpace(CRD) needs opset >= 11 (the model has 10)"),
    ("portable", (2, 2, 2), 1, 17, "off for the target (depth_to_space_3d = false)"),
    ("iree", (2, 2, 2), 1, 17, "off for the target (depth_to_space_3d = false)"),
    ("tflite", (2, 2, 2), 1, 17, "off for the target (depth_to_space_3d = false)"),
    ("mnn", (2, 2, 2), 1, 17, "off for the target (depth_to_space_3d = false)"),
    ("tvm", (1, 2, 2), 1, 17, "off for the target (depth_to_space_3d = false)"),
])
def test_portable_rule_chooses_it_or_says_why_not(target, strides, group, opset, expected):
    """The portable rule takes it where it applies, else the cascade with the refusal named."""
    m = convtranspose_model([1, 4, 2, 3, 3], _x((4, 2, 2, 3, 3)), _x((2 * group,), 1),
                            opset=opset, strides=list(strides), group=group)
    converted, node = _convert(m, target=target)
    assert expected in node.strategy_reason, node.strategy_reason
    taken = expected.startswith("target")
    assert node.strategy == (NAME if taken else "low_rank_transpose"), node.strategy_reason
    if not taken:
        assert node.strategy_reason.startswith(f"target {target}: Reshape/Transpose of rank <= ")
    assert_equivalent(m, converted, {"X": _x((1, 4, 2, 3, 3), 6)})


def test_ncnn_still_keeps_3d_and_a_fixed_choice_falls_back():
    """Ncnn's profile keeps 3-D nodes; ``--strategy depth_to_space_3d`` on a 2-D node cascades."""
    m = convtranspose_model([1, 4, 2, 3, 3], _x((4, 2, 2, 2, 2)), None, strides=[2, 2, 2])
    converted, node = _convert(m, target="ncnn")
    assert node.code == "target_keeps" and op_types(converted) == ["ConvTranspose"]
    m2 = convtranspose_model([1, 4, 3, 3], _x((4, 2, 2, 2)), None, strides=[2, 2])
    converted, node = _convert(m2, strategy=NAME)
    assert node.strategy == "low_rank_transpose" and node.declined == [[NAME, "d2s3d_rank"]]
    assert_equivalent(m2, converted, {"X": _x((1, 4, 3, 3), 7)})


@pytest.mark.parametrize("profile,strides,expected", [
    (TargetProfile(name="b2", depth_to_space=("CRD",), max_block=2, depth_to_space_3d=True),
     (2, 3, 3), "Conv3d + DepthToSpace(CRD): block 3 > max_block 2"),
    (TargetProfile(name="dcr", depth_to_space=("DCR",), depth_to_space_3d=True),
     (2, 2, 2), "Conv3d + DepthToSpace(CRD): the target has no DepthToSpace CRD"),
])
def test_profile_limits_decline_it(profile, strides, expected):
    """A profile that turns the form on still declines it past its block size or without CRD."""
    m = convtranspose_model([1, 4, 2, 3, 3], _x((4, 2, 2, 3, 3)), None, strides=list(strides))
    converted, node = _convert(m, target=profile)
    assert expected in node.strategy_reason and node.strategy == "low_rank_transpose"
    assert_equivalent(m, converted, {"X": _x((1, 4, 2, 3, 3), 6)})
