"""Quantized (QDQ) ConvTranspose, checked against ORT running the original.

The quantized weight is rearranged (zero taps = zero point), scales and zero points repeat per
phase, activation Q/DQ pairs stay valid.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import op_types, run
from onnx import TensorProto, helper, numpy_helper

import deconv2sub

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(11))


F = TensorProto.FLOAT
QTYPES = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8}


def _quantize(w, scale, zp, axis, dtype):
    info = np.iinfo(dtype)
    if axis is None:
        q = np.round(w / scale) + zp
    else:
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.round(w / scale.reshape(shape)) + zp.reshape(shape)
    return np.clip(q, info.min, info.max).astype(dtype)


def _quantized_weight(shape, dtype, axis, pow2):
    """A random float weight quantized per tensor (``axis`` None) or per channel: (q, scale, zp)."""
    w = RNG.standard_normal(shape).astype(np.float32)
    signed = np.issubdtype(dtype, np.signedinteger)
    if axis is None:
        w_scale = np.float32(2.0**-5 if pow2 else 0.0123)
        w_zp = np.array(0 if signed else 128, dtype) if not signed else np.array(3, dtype)
        w_zp_arr = np.asarray(w_zp)
        q = _quantize(w, w_scale, w_zp_arr.astype(np.float32), None, dtype)
        return q, np.asarray(w_scale, np.float32), w_zp_arr
    n = w.shape[axis]
    scale_arr = (2.0 ** -RNG.integers(4, 7, n)).astype(np.float32) if pow2 else (
        RNG.uniform(0.005, 0.02, n).astype(np.float32))
    w_zp_arr = (RNG.integers(-5, 6, n) if signed else RNG.integers(120, 136, n)).astype(dtype)
    return _quantize(w, scale_arr, w_zp_arr.astype(np.float32), axis, dtype), scale_arr, w_zp_arr


def _bias_dequantize(inits, x_scale, w_scale, per_channel, m):
    """The int32 bias (scale x_scale * w_scale, per output channel or not) and its DQ node."""
    b_scale = (
        np.float32(x_scale) * (w_scale if per_channel else np.float32(w_scale.reshape(-1)[0]))
    ).astype(np.float32)
    b_scale = (
        np.asarray(b_scale, np.float32).reshape(-1)
        if b_scale.size > 1
        else np.asarray(b_scale.reshape(-1)[0], np.float32)
    )
    inits["b_q"] = RNG.integers(-300, 300, m).astype(np.int32)
    inits["b_scale"] = b_scale
    return helper.make_node(
        "DequantizeLinear",
        ["b_q", "b_scale"],
        ["B"],
        name="b_dequant",
        **({"axis": 0} if b_scale.size > 1 else {}),
    )


def qdq_model(
    *,
    c=4,
    m_per_group=3,
    group=1,
    kernel=(3, 3),
    strides=(2, 2),
    pads=(1, 1, 0, 0),
    output_padding=(1, 1),
    dtype=np.int8,
    axis=1,  # None: per-tensor
    bias=True,
    pow2=True,  # power-of-two scales: every product and sum is exact in float32
    out_qdq=True,
    opset=17,
    spatial=(5, 6),
):
    """A QDQ ConvTranspose model: DQ(x), DQ(w), DQ(b) -> ConvTranspose -> Q/DQ of the output."""
    m = m_per_group * group
    signed = np.issubdtype(dtype, np.signedinteger)
    q, scale_arr, w_zp_arr = _quantized_weight((c, m_per_group) + tuple(kernel), dtype, axis, pow2)
    x_scale, x_zp = (np.float32(2.0**-4), np.array(0 if signed else 128, dtype)) if pow2 else (
        np.float32(0.0371), np.array(2 if signed else 131, dtype))
    y_scale, y_zp = (np.float32(2.0**-2), np.array(0 if signed else 128, dtype)) if pow2 else (
        np.float32(0.113), np.array(-1 if signed else 127, dtype))
    inits = {
        "x_scale": np.asarray(x_scale), "x_zp": x_zp, "y_scale": np.asarray(y_scale), "y_zp": y_zp,
        "w_q": q, "w_scale": scale_arr, "w_zp": w_zp_arr,
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["X", "x_scale", "x_zp"], ["x_q"], name="x_quant"),
        helper.make_node(
            "DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="x_dequant"
        ),
    ]
    dq_attrs = {} if axis is None else {"axis": axis}
    nodes.append(
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["W"], name="w_dequant", **dq_attrs
        )
    )
    ct_inputs = ["x_dq", "W"]
    if bias:
        nodes.append(_bias_dequantize(inits, x_scale, scale_arr, axis == 1 and group == 1, m))
        ct_inputs.append("B")
    nodes.append(
        helper.make_node(
            "ConvTranspose",
            ct_inputs,
            ["y_f"],
            name="up",
            strides=list(strides),
            pads=list(pads),
            output_padding=list(output_padding),
            group=group,
        )
    )
    if out_qdq:
        nodes += [
            helper.make_node("QuantizeLinear", ["y_f", "y_scale", "y_zp"], ["y_q"], name="y_quant"),
            helper.make_node(
                "DequantizeLinear", ["y_q", "y_scale", "y_zp"], ["Y"], name="y_dequant"
            ),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["y_f"], ["Y"], name="out"))
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("X", F, [1, c, *spatial])],
        [helper.make_tensor_value_info("Y", F, ["n", "c", "h", "w"])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _feeds(model):
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"X": RNG.standard_normal(shape).astype(np.float32) * 2}


def _conv_weight_dq(converted):
    conv = next(n for n in converted.graph.node if n.op_type == "Conv")
    dq = next(n for n in converted.graph.node if conv.input[1] in n.output)
    assert dq.op_type == "DequantizeLinear"
    inits = {i.name: numpy_helper.to_array(i) for i in converted.graph.initializer}
    axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
    return (
        inits[dq.input[0]],
        inits[dq.input[1]],
        inits.get(dq.input[2]) if len(dq.input) > 2 else None,
        axis,
    )


def _convert(model):
    onnx.checker.check_model(model, full_check=True)
    converted, report = deconv2sub.convert_model(model)
    assert report.rewritten and not report.skipped, [n.reason for n in report.skipped]
    onnx.checker.check_model(converted, full_check=True)
    assert "ConvTranspose" not in op_types(converted)
    return converted, report


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("axis", [None, 1])
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_qdq_exact(dtype, axis, group, bias):
    """Power-of-two scales make every float product and sum exact: the outputs must be identical."""
    model = qdq_model(
        dtype=dtype, axis=axis, group=group, bias=bias, m_per_group=3 if group == 1 else 2
    )
    converted, report = _convert(model)
    q, scale, zp, dq_axis = _conv_weight_dq(converted)
    assert q.dtype == dtype and zp.dtype == dtype
    plan_rows = 3 * 4 if group == 1 else 4 * 4  # M * phases
    assert q.shape[0] == plan_rows
    if axis is None:
        assert dq_axis is None and scale.ndim == 0
    else:
        assert dq_axis == 0 and scale.shape == (plan_rows,) and zp.shape == (plan_rows,)
    assert "quantized weight" in report.nodes[0].summary()
    feeds = _feeds(model)
    np.testing.assert_array_equal(run(converted, feeds)[0], run(model, feeds)[0])


def test_missing_taps_hold_the_zero_point():
    """Kernel 3 with stride 2 leaves empty taps.

    With a non-zero zero point they must hold it (not 0).
    """
    model = qdq_model(dtype=np.uint8, axis=1, kernel=(3, 3), bias=False)
    converted, _ = _convert(model)
    q, scale, zp, _ = _conv_weight_dq(converted)
    dequantized = (q.astype(np.int32) - zp.reshape(-1, 1, 1, 1).astype(np.int32)) * scale.reshape(
        -1, 1, 1, 1
    )
    # Every Conv tap that is not a ConvTranspose tap dequantizes to exactly 0.
    w_q = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w_q"))
    assert (dequantized == 0).sum() >= q.size - w_q.size * 1  # zero taps exist and are exact zeros
    assert (q == zp.reshape(-1, 1, 1, 1)).sum() >= q.size - w_q.size
    feeds = _feeds(model)
    np.testing.assert_array_equal(run(converted, feeds)[0], run(model, feeds)[0])


@pytest.mark.parametrize("order", ["CRD", "DCR", "auto"])
def test_repeat_order_per_phase(order):
    """Per-channel scales of the Conv repeat each output channel's scale for its P phases.

    np.repeat in CRD order, np.tile in DCR, and whatever row layout the plan picks otherwise.
    """
    from deconv2sub import ConvertOptions

    model = qdq_model(axis=1, bias=False, m_per_group=3)
    onnx.checker.check_model(model, full_check=True)
    converted, report = deconv2sub.convert_model(model, ConvertOptions(order=order))
    assert report.rewritten, report.skipped[0].reason
    _, scale, zp, _ = _conv_weight_dq(converted)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    if order == "CRD":
        np.testing.assert_array_equal(scale, np.repeat(inits["w_scale"], 4))
        np.testing.assert_array_equal(zp, np.repeat(inits["w_zp"], 4))
    elif order == "DCR":
        np.testing.assert_array_equal(scale, np.tile(inits["w_scale"], 4))
        np.testing.assert_array_equal(zp, np.tile(inits["w_zp"], 4))
    feeds = _feeds(model)
    np.testing.assert_array_equal(run(converted, feeds)[0], run(model, feeds)[0])


def test_activation_qdq_pairs_and_requantized_conv_output():
    """The Conv reads only DQ inputs and its output is re-quantized like the original's."""
    model = qdq_model(axis=1)
    converted, report = _convert(model)
    ops = op_types(converted)
    conv_i = ops.index("Conv")
    # DQ(x) and DQ(w), DQ(b) feed the Conv; the Conv output is re-quantized with the output's Q
    # params.
    assert ops[conv_i + 1: conv_i + 3] == ["QuantizeLinear", "DequantizeLinear"]
    assert ops[-2:] == ["QuantizeLinear", "DequantizeLinear"]
    conv = converted.graph.node[conv_i]
    producers = {o: n.op_type for n in converted.graph.node for o in n.output}
    assert [producers[i] for i in conv.input] == ["DequantizeLinear"] * 3
    assert any("subpixel_conv_quantize" in n for n in report.nodes[0].new_nodes)
    # No float copy of the weight is left.
    assert not [i for i in converted.graph.initializer if i.data_type == F and len(i.dims) == 4]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("axis", [None, 1])
def test_qdq_general_scales_within_one_step(dtype, axis):
    """Arbitrary scales: at most one quantization step off.

    Float summation order may flip a rounding tie.
    """
    model = qdq_model(dtype=dtype, axis=axis, pow2=False, spatial=(7, 7))
    converted, _ = _convert(model)
    feeds = _feeds(model)
    ref, got = run(model, feeds)[0], run(converted, feeds)[0]
    step = 0.113
    diff = np.abs(ref - got)
    assert diff.max() <= step * 1.001
    assert (diff > 0).mean() < 0.01


def test_qdq_runs_with_ort_optimisations():
    """The model still runs when ORT's optimisations fuse DQ → Conv → Q into an integer Conv."""
    model = qdq_model(axis=1, dtype=np.uint8)
    converted, _ = _convert(model)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(
        converted.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )
    feeds = _feeds(model)
    got = sess.run(None, feeds)[0]
    np.testing.assert_allclose(got, run(model, feeds)[0], atol=0.25 * 1.001)


def test_per_channel_input_axis_group_1():
    """Per-channel weight scales over input channels (axis 0, group 1) are exact."""
    model = qdq_model(axis=0, group=1, bias=False)
    converted, _ = _convert(model)
    _, scale, _, dq_axis = _conv_weight_dq(converted)
    assert dq_axis == 1 and scale.shape == (4,)
    feeds = _feeds(model)
    np.testing.assert_array_equal(run(converted, feeds)[0], run(model, feeds)[0])


def test_per_channel_input_axis_grouped_is_declined():
    """Per-channel scales over input channels with groups are declined, with the reason."""
    model = qdq_model(axis=0, group=2, m_per_group=2, bias=False)
    converted, report = deconv2sub.convert_model(model)
    assert (
        report.skipped
        and report.skipped[0].code == "quantization"
        and "axis 0" in report.skipped[0].reason
        and "group == 1" in report.skipped[0].reason
    )
    assert "ConvTranspose" in op_types(converted)


def test_blocked_quantization_is_declined():
    """Blocked weight quantization (opset 21) is declined."""
    model = qdq_model(axis=1, bias=False, opset=21)
    model.ir_version = 10
    dq = next(n for n in model.graph.node if n.name == "w_dequant")
    w_q = next(i for i in model.graph.initializer if i.name == "w_q")
    # Blocks of 2 along axis 0 (input channels): scale [C/2, M, k, k].
    c, m, kh, kw = w_q.dims
    for name, dtype in (("w_scale", np.float32), ("w_zp", np.int8)):
        init = next(i for i in model.graph.initializer if i.name == name)
        init.CopyFrom(
            numpy_helper.from_array(
                np.ones((c // 2, m, kh, kw), dtype) * (2**-5 if dtype == np.float32 else 0), name
            )
        )
    del dq.attribute[:]
    dq.attribute.extend([helper.make_attribute("axis", 0), helper.make_attribute("block_size", 2)])
    _, report = deconv2sub.convert_model(model)
    assert report.skipped and report.skipped[0].code == "quantization"
    assert "block_size" in report.skipped[0].reason


def test_no_output_quantize_still_exact():
    """Without an output QuantizeLinear the rewrite is still exact."""
    model = qdq_model(axis=1, out_qdq=False)
    converted, _ = _convert(model)
    assert op_types(converted).count("QuantizeLinear") == 1  # only the input's
    feeds = _feeds(model)
    np.testing.assert_allclose(run(converted, feeds)[0], run(model, feeds)[0], rtol=1e-6, atol=1e-6)


def test_cli_verifies_qdq_model(tmp_path):
    """The CLI converts and verifies a QDQ model."""
    from click.testing import CliRunner

    from deconv2sub.cli import main

    path = tmp_path / "qdq.onnx"
    onnx.save(qdq_model(axis=1, dtype=np.uint8), path)
    r = CliRunner().invoke(
        main, ["convert", str(path), "-o", str(tmp_path / "out.onnx")], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output
