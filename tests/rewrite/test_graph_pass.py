"""The graph pass, checked against ONNX Runtime running the ORIGINAL ConvTranspose.

Never against our formula.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import onnx
import pytest
from builders import assert_equivalent, convtranspose_model, op_types, run

import deconv2sub
from deconv2sub import ConvertOptions

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(1234))


def _convert_and_check(model, feeds_list, expect_rewritten=True, options=None):
    converted, report = deconv2sub.convert_model(model, options)
    if expect_rewritten:
        assert report.rewritten and not report.skipped, [n.reason for n in report.skipped]
        assert "ConvTranspose" not in op_types(converted)
    onnx.checker.check_model(converted, full_check=True)
    for feeds in feeds_list:
        assert_equivalent(model, converted, feeds)
    return converted, report


def _x(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---- 1-D: the full attribute space of one axis ---------------------------------------------------
CASES_1D = [
    (k, s, d, pb, pe, op)
    for k, s, d, pb, pe, op in itertools.product(
        [1, 2, 3, 4, 5], [1, 2, 3], [1, 2], [0, 1, 3], [0, 2], [0, 1, 2]
    )
    if op < s  # ONNX Runtime requires output_padding < stride
]


@pytest.mark.parametrize("k,s,d,pb,pe,op", CASES_1D)
def test_1d_attribute_space(k, s, d, pb, pe, op):
    """1-D kernel, stride, dilation, pads and output_padding: equal to ORT's ConvTranspose."""
    size = 6
    if s * (size - 1) + op + d * (k - 1) + 1 - pb - pe <= 0:
        pytest.skip("empty output")
    w = _x((3, 2, k))
    b = _x((2,))
    m = convtranspose_model(
        [1, 3, size], w, b, strides=[s], dilations=[d], pads=[pb, pe], output_padding=[op]
    )
    _convert_and_check(m, [{"X": _x((1, 3, size))}])


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize(
    "k,s,d,op",
    [
        (1, 2, 1, 0),
        (2, 2, 1, 0),
        (3, 2, 1, 1),
        (4, 2, 1, 0),
        (5, 3, 1, 2),
        (3, 2, 2, 1),
        (16, 8, 1, 0),
    ],
)
def test_1d_auto_pad(auto_pad, k, s, d, op):
    """1-D auto_pad modes: equal to ORT's ConvTranspose."""
    attrs = dict(strides=[s], dilations=[d], output_padding=[op])
    if auto_pad != "NOTSET":
        attrs["auto_pad"] = auto_pad
    w = _x((2, 3, k))
    m = convtranspose_model([1, 2, 7], w, None, **attrs)
    _convert_and_check(m, [{"X": _x((1, 2, 7))}])


@pytest.mark.parametrize("auto_pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize(
    "k,s,shrink", [(4, 2, 0), (4, 2, 1), (4, 2, 3), (3, 2, 2), (5, 3, 4), (2, 2, 1)]
)
def test_1d_output_shape(auto_pad, k, s, shrink):
    """1-D output_shape (with and without auto_pad): ORT's output length and values."""
    size = 5
    out = s * (size - 1) + k - shrink
    attrs = dict(strides=[s], output_shape=[out])
    if auto_pad != "NOTSET":
        attrs["auto_pad"] = auto_pad
    m = convtranspose_model([1, 2, size], _x((2, 2, k)), _x((2,)), **attrs)
    converted, _ = _convert_and_check(m, [{"X": _x((1, 2, size))}])
    assert run(converted, {"X": _x((1, 2, size))})[0].shape == (1, 2, out)


# ---- 2-D -----------------------------------------------------------------------------------------
CASES_2D = [
    # kernel, strides, dilations, pads, output_padding, group
    ((4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0), 1),  # DCGAN
    ((2, 2), (2, 2), (1, 1), (0, 0, 0, 0), (0, 0), 1),  # U-Net
    ((3, 3), (2, 2), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # ENet / LinkNet
    ((16, 16), (8, 8), (1, 1), (4, 4, 4, 4), (0, 0), 1),  # FCN
    ((3, 5), (2, 3), (1, 1), (0, 2, 1, 0), (1, 2), 1),  # unequal strides, asymmetric pads
    ((3, 3), (1, 2), (2, 1), (1, 0, 0, 1), (0, 1), 1),  # stride 1 on one axis, dilation on it
    ((4, 4), (2, 2), (2, 2), (1, 2, 2, 1), (1, 1), 1),  # dilation = stride: empty phases
    ((3, 3), (3, 3), (1, 1), (0, 0, 0, 0), (2, 2), 1),  # kernel == stride, op
    ((4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0), 2),  # grouped
    ((4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0), 4),  # depthwise (C = group = 4, M = 4)
    ((3, 3), (2, 2), (1, 1), (5, 0, 0, 5), (1, 1), 2),  # pads larger than stride*taps
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kernel,strides,dilations,pads,op,group", CASES_2D)
def test_2d(kernel, strides, dilations, pads, op, group, bias):
    """2-D kernels, strides, dilations, pads, output_padding, groups, bias: equal to ORT."""
    c, m_per_group = 4, 3 if group != 4 else 1
    w = _x((c, m_per_group) + kernel)
    b = _x((m_per_group * group,)) if bias else None
    m = convtranspose_model(
        [2, c, 5, 6],
        w,
        b,
        strides=list(strides),
        dilations=list(dilations),
        pads=list(pads),
        output_padding=list(op),
        group=group,
    )
    _convert_and_check(m, [{"X": _x((2, c, 5, 6))}])


@pytest.mark.parametrize("opset", [7, 9, 10, 11, 13, 17])
@pytest.mark.parametrize("group", [1, 2])
def test_opsets(opset, group):
    """DepthToSpace DCR before opset 11, CRD from 11; Slice attributes before opset 10."""
    w = _x((4, 2, 3, 3))
    m = convtranspose_model(
        [1, 4, 5, 5],
        w,
        _x((2 * group,)),
        opset=opset,
        ir_version=7 if opset < 13 else 8,
        strides=[2, 2],
        pads=[1, 1, 0, 0],
        output_padding=[1, 1],
        group=group,
    )
    converted, report = _convert_and_check(
        m, [{"X": _x((1, 4, 5, 5))}], options=ConvertOptions(strategy="depth_to_space")
    )
    shuffle = report.nodes[0].shuffle
    if group == 1:
        assert shuffle == ("DepthToSpace(CRD)" if opset >= 11 else "DepthToSpace(DCR)")
    else:
        assert shuffle == ("DepthToSpace(CRD)" if opset >= 11 else "Reshape/Transpose")
    assert converted.opset_import[0].version == opset


# ---- 3-D -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kernel,strides,pads,op,group",
    [
        ((2, 2, 2), (2, 2, 2), (0,) * 6, (0, 0, 0), 1),
        ((3, 4, 3), (2, 2, 1), (1, 1, 0, 0, 1, 1), (1, 0, 0), 2),
        ((3, 3, 3), (1, 2, 3), (0, 1, 2, 2, 1, 0), (0, 1, 2), 1),
    ],
)
def test_3d(kernel, strides, pads, op, group):
    """3-D kernels, strides, pads, output_padding and groups: equal to ORT."""
    w = _x((4, 2) + kernel)
    m = convtranspose_model(
        [1, 4, 3, 4, 5],
        w,
        _x((2 * group,)),
        strides=list(strides),
        pads=list(pads),
        output_padding=list(op),
        group=group,
    )
    _convert_and_check(m, [{"X": _x((1, 4, 3, 4, 5))}])


# ---- symbolic dims: two shapes each --------------------------------------------------------------
@pytest.mark.parametrize(
    "in_shape,shapes,kernel,strides,pads,op",
    [
        (["N", 3, 5, 5], [(1, 3, 5, 5), (3, 3, 5, 5)], (4, 4), (2, 2), (1, 1, 1, 1), (0, 0)),
        (["N", 3, "H", "W"], [(1, 3, 5, 6), (2, 3, 9, 4)], (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
        (["N", 3, "H", "W"], [(1, 3, 5, 6), (2, 3, 9, 4)], (3, 5), (2, 3), (0, 1, 2, 0), (1, 0)),
        (["N", 3, "H", 6], [(1, 3, 5, 6), (2, 3, 9, 6)], (3, 5), (2, 3), (0, 1, 2, 0), (1, 0)),
        (["N", 3, "L"], [(1, 3, 10), (2, 3, 33)], (16,), (8,), (4, 4), (0,)),
        (
            [None, 3, "D", "H", "W"],
            [(1, 3, 2, 3, 4), (2, 3, 3, 2, 5)],
            (3, 2, 3),
            (2, 2, 2),
            (1, 0, 1, 0, 0, 1),
            (1, 0, 0),
        ),
    ],
)
def test_symbolic_dims(in_shape, shapes, kernel, strides, pads, op):
    """Symbolic batch and spatial dims: equal to ORT at two shapes each."""
    w = _x((3, 2) + kernel)
    m = convtranspose_model(
        in_shape, w, _x((2,)), strides=list(strides), pads=list(pads), output_padding=list(op)
    )
    _convert_and_check(m, [{"X": _x(s)} for s in shapes])


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_symbolic_auto_pad(auto_pad):
    """auto_pad with symbolic dims: equal to ORT at two shapes."""
    m = convtranspose_model(
        ["N", 2, "H", "W"], _x((2, 2, 3, 3)), None, strides=[2, 2], auto_pad=auto_pad
    )
    _convert_and_check(m, [{"X": _x((1, 2, 4, 5))}, {"X": _x((2, 2, 7, 3))}])


def test_output_shape_with_symbolic_input_crops_at_run_time():
    """The pads depend on the run-time size: a run-time crop (more in test_output_shape.py)."""
    m = convtranspose_model(
        ["N", 2, "H", "W"], _x((2, 2, 3, 3)), None, strides=[2, 2], output_shape=[10, 10]
    )
    _, report = _convert_and_check(m, [{"X": _x((1, 2, 5, 5))}, {"X": _x((2, 2, 4, 6))}])
    assert report.nodes[0].crop == [["run-time", 10], ["run-time", 10]]


# ---- weights, dtypes, model-level invariants -----------------------------------------------------
def test_constant_node_weight():
    """A weight from a Constant node is rewritten; the result equals ORT's."""
    m = convtranspose_model(
        [1, 2, 4, 4],
        _x((2, 1, 4, 4)),
        None,
        weight_as="constant",
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )
    _convert_and_check(m, [{"X": _x((1, 2, 4, 4))}])


def test_runtime_weight_is_skipped_with_reason():
    """A weight fed as a graph input keeps the ConvTranspose, with the reason."""
    m = convtranspose_model([1, 2, 4, 4], _x((2, 1, 4, 4)), None, weight_as="input", strides=[2, 2])
    converted, report = deconv2sub.convert_model(m)
    assert len(report.skipped) == 1 and report.skipped[0].code == "weight_not_constant"
    assert op_types(converted) == ["ConvTranspose"]


def test_float16():
    """A float16 model converts in float16 and matches ORT."""
    w = _x((2, 2, 4, 4), np.float16)
    m = convtranspose_model(
        [1, 2, 5, 5], w, _x((2,), np.float16), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, _ = deconv2sub.convert_model(m)
    x = _x((1, 2, 5, 5), np.float16)
    ref, got = run(m, {"X": x})[0], run(converted, {"X": x})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_seed_example():
    """The seed paper's example: input (1,4,4), r = 2, kernel (1,1,4,4).

    Conv kernel (4,1,2,2) + shuffle to (1,8,8).
    """
    w = _x((1, 1, 4, 4))
    m = convtranspose_model([1, 1, 4, 4], w, None, strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = _convert_and_check(
        m, [{"X": _x((1, 1, 4, 4))}], options=ConvertOptions(strategy="depth_to_space")
    )
    conv_w = [i for i in converted.graph.initializer if i.name.endswith("subpixel_weight")][0]
    assert list(conv_w.dims) == [4, 1, 2, 2]
    assert run(converted, {"X": _x((1, 1, 4, 4))})[0].shape == (1, 1, 8, 8)


def test_model_fields_names_and_shared_weight():
    """Output names and metadata kept; a weight shared by two nodes, a graph output, stay valid."""
    from onnx import TensorProto, helper, numpy_helper

    w = _x((2, 2, 4, 4))
    nodes = [
        helper.make_node(
            "ConvTranspose", ["X", "W"], ["Y1"], name="up1", strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("ConvTranspose", ["X", "W"], ["Y2"], name="up2", strides=[2, 2]),
        helper.make_node("Relu", ["Y1"], ["R"], name="relu"),
        helper.make_node("Identity", ["W"], ["Wout"], name="w_out"),
    ]

    def vi(n):
        return helper.make_tensor_value_info(n, TensorProto.FLOAT, ["a", "b", "c", "d"])

    g = helper.make_graph(
        nodes,
        "my_graph",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 4, 4])],
        [vi("R"), vi("Y2"), vi("Wout")],
        [numpy_helper.from_array(w, "W")],
    )
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8,
        producer_name="tester",
        producer_version="9.9",
        doc_string="doc",
        model_version=7,
    )
    helper.set_model_props(m, {"author": "me"})
    converted, report = _convert_and_check(m, [{"X": _x((1, 2, 4, 4))}])
    assert [o.name for o in converted.graph.output] == ["R", "Y2", "Wout"]
    assert (converted.ir_version, converted.producer_name, converted.producer_version) == (
        8,
        "tester",
        "9.9",
    )
    assert (converted.doc_string, converted.model_version, converted.graph.name) == (
        "doc",
        7,
        "my_graph",
    )
    assert {p.key: p.value for p in converted.metadata_props} == {"author": "me"}
    names = [n.name for n in converted.graph.node]
    assert len(names) == len(set(names)) and all(
        n.startswith(("up1/", "up2/", "relu", "w_out")) for n in names
    )
    assert {n.output for n in report.nodes} == {"Y1", "Y2"}


def test_idempotent():
    """Converting a converted model finds nothing and changes no byte."""
    m = convtranspose_model(
        [1, 2, 4, 4], _x((2, 2, 4, 4)), _x((2,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    once, _ = deconv2sub.convert_model(m)
    twice, report = deconv2sub.convert_model(once)
    assert not report.nodes
    assert twice.SerializeToString() == once.SerializeToString()


def test_input_model_not_modified():
    """convert_model leaves its input model unchanged."""
    m = convtranspose_model([1, 2, 4, 4], _x((2, 2, 4, 4)), None, strides=[2, 2])
    before = m.SerializeToString()
    deconv2sub.convert_model(m)
    assert m.SerializeToString() == before


@pytest.mark.parametrize("shuffle", ["auto", "reshape"])
@pytest.mark.parametrize("order", ["auto", "CRD", "DCR"])
def test_options(shuffle, order):
    """The shuffle and order options are honoured and stay exact at two shapes."""
    m = convtranspose_model(
        ["N", 3, "H", "W"], _x((3, 2, 4, 4)), _x((2,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = _convert_and_check(
        m,
        [{"X": _x((1, 3, 4, 5))}, {"X": _x((2, 3, 3, 3))}],
        options=ConvertOptions(shuffle=shuffle, order=order, strategy="depth_to_space"),
    )
    kind = report.nodes[0].shuffle
    assert kind == (
        "Reshape/Transpose"
        if shuffle == "reshape"
        else f"DepthToSpace({'DCR' if order == 'DCR' else 'CRD'})"
    )
