"""Emission strategies, crop folding and shuffle sinking.

Checked against ONNX Runtime running the ORIGINAL ConvTranspose (+ its consumers).
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from builders import assert_equivalent, convtranspose_model, data_op_types, op_types
from onnx import TensorProto, helper, numpy_helper

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.plan.subpixel import ConvTransposeAttrs, make_plan
from deconv2sub.rewrite.emissions import registry

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(99)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(99))


STRATEGIES = ["default", *registry.NAMES]  # every registered emission


def _x(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def _chain_model(in_shape, weight, bias, consumers, attrs, *, extra_outputs=(), opset=17):
    """X -> ConvTranspose -> consumers... -> Y.

    ``consumers``: list of (op, extra input arrays, attrs).
    """
    inits = [numpy_helper.from_array(weight, "W")]
    inputs = ["X", "W"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "B"))
        inputs.append("B")
    nodes = [helper.make_node("ConvTranspose", inputs, ["t0"], name="up", **attrs)]
    for i, (op, extras, op_attrs) in enumerate(consumers):
        names = []
        for j, arr in enumerate(extras):
            if arr is None:
                names.append("")
                continue
            name = f"c{i}_{j}"
            inits.append(numpy_helper.from_array(np.asarray(arr), name))
            names.append(name)
        ins = [f"t{i}"] + names
        if op_attrs.pop("_swap", False):
            ins = ins[::-1]
        nodes.append(helper.make_node(op, ins, [f"t{i + 1}"], name=f"{op.lower()}{i}", **op_attrs))
    last = f"t{len(consumers)}"
    nodes.append(helper.make_node("Identity", [last], ["Y"], name="out"))
    sym = [f"d{i}" for i in range(len(in_shape))]
    outs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, sym)]
    outs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, sym) for n in extra_outputs]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(in_shape))],
        outs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _check(model, feeds_list, options):
    converted, report = deconv2sub.convert_model(model, options)
    assert report.rewritten and not report.skipped
    assert "ConvTranspose" not in op_types(converted)
    onnx.checker.check_model(converted, full_check=True)
    for feeds in feeds_list:
        assert_equivalent(model, converted, feeds)
    return converted, report


M = 3


def _bn():
    return (
        "BatchNormalization",
        [_x((M,)), _x((M,)), _x((M,)), np.abs(_x((M,))) + 0.5],
        {"epsilon": 1e-5},
    )


CONSUMERS = {
    "bn_relu": [_bn(), ("Relu", [], {})],
    "leaky": [("LeakyRelu", [], {"alpha": 0.1})],
    "clip": [("Clip", [np.array(-0.5, np.float32), np.array(0.7, np.float32)], {})],
    "clip_min_only": [("Clip", [np.array(-0.5, np.float32), None], {})],
    "sigmoid_tanh": [("Sigmoid", [], {}), ("Tanh", [], {})],
    "add_per_channel": [("Add", [_x((M, 1, 1))], {})],
    "add_scalar_left": [("Add", [np.array([0.3], np.float32)], {"_swap": True})],
    "mul_4d_per_channel": [("Mul", [_x((1, M, 1, 1))], {})],
    "sub_left": [("Sub", [_x((M, 1, 1))], {"_swap": True})],
    "div": [("Div", [np.abs(_x((M, 1, 1))) + 1.0], {})],
    "prelu_per_channel": [("PRelu", [_x((M, 1, 1))], {})],
    "prelu_scalar": [("PRelu", [np.array([0.2], np.float32)], {})],
    "bn_add_relu_mul": [
        _bn(),
        ("Add", [_x((M, 1, 1))], {}),
        ("Relu", [], {}),
        ("Mul", [_x((M, 1, 1))], {}),
    ],
}
# consumers that must stay below the shuffle (their operand varies over space)
NOT_MOVABLE = {
    "add_spatial": [("Add", [_x((1, 1, 1, 8))], {})],
}

CASES_2D = [
    # kernel, strides, pads, output_padding, group, in spatial
    ((4, 4), (2, 2), (1, 1, 1, 1), (0, 0), 1, (4, 4)),  # DCGAN
    ((2, 2), (2, 2), (0, 0, 0, 0), (0, 0), 1, (4, 4)),  # U-Net
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, (4, 4)),  # ENet: crop folds away
    ((3, 5), (2, 3), (0, 2, 1, 0), (1, 2), 1, (3, 3)),  # unequal strides
    ((4, 4), (2, 2), (1, 1, 1, 1), (0, 0), 3, (4, 4)),  # grouped (M = 3 = group)
]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("consumers", sorted(CONSUMERS))
def test_sink_2d(consumers, strategy):
    """Movable consumers of a 2-D ConvTranspose go above the shuffle; exact against ORT."""
    kernel, strides, pads, op, group, spatial = CASES_2D[
        sorted(CONSUMERS).index(consumers) % len(CASES_2D)
    ]
    c = 3 if group == 1 else group
    w = _x((c, M // group) + kernel)
    attrs = dict(strides=list(strides), pads=list(pads), output_padding=list(op), group=group)
    m = _chain_model([1, c, *spatial], w, _x((M,)), CONSUMERS[consumers], attrs)
    converted, report = _check(m, [{"X": _x((1, c, *spatial))}], ConvertOptions(strategy=strategy))
    expected = [op for op, _, _ in CONSUMERS[consumers]]
    # a Gemm cannot take BN (axis 1)
    if "Gemm" in op_types(converted) and "BatchNormalization" in expected:
        expected = expected[: expected.index("BatchNormalization")]
    assert [s.split()[0] for s in report.nodes[0].sunk] == expected


@pytest.mark.parametrize("consumers", ["bn_relu", "add_per_channel", "prelu_per_channel", "clip"])
@pytest.mark.parametrize("rank", [1, 3])
def test_sink_1d_3d(consumers, rank):
    """Movable consumers go above the shuffle in 1-D and 3-D too; exact against ORT."""
    kernel, strides, pads, spatial = {
        1: ((16,), (8,), (4, 4), (5,)),
        3: ((3, 2, 3), (2, 2, 1), (1, 0, 0, 0, 1, 1), (3, 2, 3)),
    }[rank]
    w = _x((2, M) + kernel)
    ops = [
        (
            op,
            [a.reshape((M,) + (1,) * rank) if a is not None and a.ndim == 3 else a for a in extras],
            dict(at),
        )
        for op, extras, at in CONSUMERS[consumers]
    ]
    m = _chain_model(
        [1, 2, *spatial], w, _x((M,)), ops, dict(strides=list(strides), pads=list(pads))
    )
    converted, report = _check(m, [{"X": _x((1, 2, *spatial))}], ConvertOptions())
    assert len(report.nodes[0].sunk) == len(ops)


def test_not_sunk_when_spatial_operand_or_shared():
    """Consumers stay below when an operand varies over space or a tensor is a graph output."""
    w = _x((2, M, 4, 4))
    attrs = dict(strides=[2, 2], pads=[1, 1, 1, 1])
    m = _chain_model([1, 2, 4, 4], w, None, NOT_MOVABLE["add_spatial"], attrs)
    _, report = _check(m, [{"X": _x((1, 2, 4, 4))}], ConvertOptions())
    assert report.nodes[0].sunk == []
    # the ConvTranspose output is also a graph output: it must stay, so nothing moves
    m = _chain_model([1, 2, 4, 4], w, None, [("Relu", [], {})], attrs, extra_outputs=["t0"])
    converted, report = _check(m, [{"X": _x((1, 2, 4, 4))}], ConvertOptions())
    assert report.nodes[0].sunk == [] and "t0" in [o.name for o in converted.graph.output]
    # stops at a tensor that is a graph output, after moving what is before it
    m = _chain_model(
        [1, 2, 4, 4], w, None, [("Relu", [], {}), ("Sigmoid", [], {})], attrs, extra_outputs=["t1"]
    )
    converted, report = _check(m, [{"X": _x((1, 2, 4, 4))}], ConvertOptions())
    assert [s.split()[0] for s in report.nodes[0].sunk] == ["Relu"]


def test_sink_off():
    """``sink=False`` moves nothing: the consumers stay after the shuffle."""
    w = _x((2, M, 4, 4))
    m = _chain_model(
        [1, 2, 4, 4], w, None, CONSUMERS["bn_relu"], dict(strides=[2, 2], pads=[1, 1, 1, 1])
    )
    converted, report = _check(m, [{"X": _x((1, 2, 4, 4))}], ConvertOptions(sink=False))
    assert report.nodes[0].sunk == []
    assert op_types(converted)[-3:] == ["BatchNormalization", "Relu", "Identity"]


# the measured ONNX Runtime rule (not the portable default)
ORT_RULE = ConvertOptions(target="onnxruntime")


# ---- strategies on the attribute space: symbolic dims, batch, dilations, groups ------------------
STRATEGY_CASES = [
    # in_shape, test shapes, kernel, strides, dilations, pads, output_padding, group
    ([1, 3, 5, 6], [(1, 3, 5, 6)], (4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0), 1),
    ([2, 3, 5, 6], [(2, 3, 5, 6)], (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (["N", 3, 5, 6], [(1, 3, 5, 6), (3, 3, 5, 6)], (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (["N", 3, "H", "W"], [(1, 3, 5, 6), (2, 3, 9, 4)],
     (3, 5), (2, 3), (1, 1), (0, 1, 2, 0), (1, 0), 1),
    ([1, 3, "H", "W"], [(1, 3, 5, 6), (1, 3, 9, 4)],
     (4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0), 1),
    (["N", 3, "H", 6], [(1, 3, 5, 6), (2, 3, 9, 6)],
     (3, 3), (2, 1), (1, 2), (1, 0, 0, 1), (1, 0), 1),
    (["N", 3, "H", 6], [(1, 3, 5, 6), (2, 3, 9, 6)],
     (3, 3), (1, 2), (2, 1), (1, 0, 0, 1), (0, 1), 1),
    ([1, 4, 5, 5], [(1, 4, 5, 5)], (4, 4), (2, 2), (2, 2), (1, 2, 2, 1), (1, 1), 2),
    ([1, 4, 5, 5], [(1, 4, 5, 5)], (3, 3), (2, 2), (1, 1), (5, 0, 0, 5), (1, 1), 2),
    (["N", 3, "L"], [(1, 3, 10), (2, 3, 33)], (16,), (8,), (1,), (4, 4), (0,), 1),
    ([1, 3, 7], [(1, 3, 7)], (5,), (3,), (2,), (3, 1), (2,), 1),
    ([1, 3, 3, 4, 5], [(1, 3, 3, 4, 5)], (2, 2, 2), (2, 2, 2), (1, 1, 1), (0,) * 6, (0, 0, 0), 1),
    # U-Net: Gemm
    ([1, 3, 5, 6], [(1, 3, 5, 6)], (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), (0, 0), 1),
    # 1x1 with crops
    ([1, 3, 5, 6], [(1, 3, 5, 6)], (3, 2), (3, 2), (1, 1), (1, 0, 2, 1), (0, 1), 1),
    ([1, 3, 3, 4, 5], [(1, 3, 3, 4, 5)],
     (2, 2, 2), (2, 2, 2), (1, 1, 1), (1, 0, 1, 0, 1, 1), (0, 0, 0), 1),
    ([None, 3, "D", "H", "W"], [(1, 3, 2, 3, 4), (2, 3, 3, 2, 5)],
     (3, 2, 3), (2, 2, 2), (1, 1, 1), (1, 0, 1, 0, 0, 1), (1, 0, 0), 1),
    ([1, 4, 3, 4, 5], [(1, 4, 3, 4, 5)],
     (3, 4, 3), (2, 2, 1), (1, 1, 1), (1, 1, 0, 0, 1, 1), (1, 0, 0), 2),
]


# the ONNX Runtime rule's choice for each of STRATEGY_CASES (a table of the rule, not derived)
DEFAULT_ORT = [
    "per_phase", "per_phase", "per_phase", "transpose_gather", "transpose_gather", "per_phase",
    "per_phase", "transpose_gather", "per_phase", "transpose_gather", "per_phase",
    "transpose_gather", "transpose_gather", "transpose_gather", "transpose_gather", "per_phase",
    "per_phase",
]
# the fallback of the phase-Conv emissions when a phase receives no tap
FALLBACK = {"per_phase": "two_stage", "per_phase_channels_last": "channels_last"}


def _has_empty_phase(kernel, strides, dilations) -> bool:
    """By ONNX's scatter ``j = s*i + d*k``: some axis has an output phase no tap reaches."""
    return any(
        {(d * k) % s for k in range(size)} != set(range(s))
        for size, s, d in zip(kernel, strides, dilations)
    )


@pytest.mark.parametrize(
    "strategy",
    [
        "default",
        "two_stage",
        "transpose",
        "per_phase",
        "transpose_gather",
        "pointwise_gemm",
        "channels_last",
        "per_phase_channels_last",
    ],
)
@pytest.mark.parametrize("in_shape,shapes,kernel,strides,dilations,pads,op,group", STRATEGY_CASES)
def test_strategies(strategy, in_shape, shapes, kernel, strides, dilations, pads, op, group):
    """Every fixed strategy, over the attribute space, is exact against ORT and reported."""
    c = in_shape[1]
    w = _x((c, 6 // group if group > 1 else 2) + kernel)
    m_out = w.shape[1] * group
    m = convtranspose_model(
        in_shape,
        w,
        _x((m_out,)),
        strides=list(strides),
        dilations=list(dilations),
        pads=list(pads),
        output_padding=list(op),
        group=group,
    )
    options = ConvertOptions(
        strategy=strategy, target="onnxruntime" if strategy == "default" else "portable"
    )
    converted, report = _check(m, [{"X": _x(s)} for s in shapes], options)
    entry = report.nodes[0]
    parts = entry.strategy_reason.split("; ")
    if strategy == "default":
        case = (in_shape, shapes, kernel, strides, dilations, pads, op, group)
        assert entry.strategy == DEFAULT_ORT[STRATEGY_CASES.index(case)]
        assert parts[0].startswith("default: ")
        return
    fixed = f"fixed strategy '{strategy}'"
    if strategy in FALLBACK and _has_empty_phase(kernel, strides, dilations):
        fallback = FALLBACK[strategy]
        assert entry.strategy == fallback
        assert parts == [fixed, f"per_phase impossible (a phase without taps): {fallback}"]
        return
    assert entry.strategy == strategy and parts[0] == fixed
    notes = parts[1:]
    if strategy in FALLBACK:
        assert len(notes) == 1 and "Convs (" in notes[0] and "no begin crop" in notes[0], notes
    elif strategy == "pointwise_gemm":
        assert notes == (["Gemm instead of the 1x1 Conv"] if "Gemm" in op_types(converted) else [])
    else:
        assert notes == []


def test_crop_folds_away_for_enet():
    """k3 s2 p1 op1: the begin crop becomes a phase rotation with no extra tap.

    No Slice is left.
    """
    w = _x((4, 3, 3, 3))
    m = convtranspose_model(
        [1, 4, 6, 6], w, _x((3,)), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]
    )
    two_stage = ConvertOptions(strategy="two_stage")
    converted, report = _check(m, [{"X": _x((1, 4, 6, 6))}], two_stage)
    assert "Slice" not in op_types(converted)
    assert report.nodes[0].crop is None and report.nodes[0].conv_kernel == [2, 2]
    # DCGAN k4 s2 p1 would need 3 taps instead of 2: the crop stays
    m = convtranspose_model([1, 4, 6, 6], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = _check(m, [{"X": _x((1, 4, 6, 6))}], two_stage)
    assert "Slice" in op_types(converted) and report.nodes[0].conv_kernel == [2, 2]


def test_fold_crop_never_adds_taps():
    """Folding the crop never makes the kernel longer and keeps the begin pad >= 0."""
    import itertools

    for k, s, d, pb, op in itertools.product(
        [1, 2, 3, 4, 5, 7, 16], [1, 2, 3, 8], [1, 2], range(0, 9), [0, 1, 2]
    ):
        if op >= max(s, d):
            continue
        attrs = ConvTransposeAttrs(strides=[s], dilations=[d], pads=[pb, 0], output_padding=[op])
        w = np.ones((1, 1, k), np.float32)
        plain, folded = (
            make_plan(w, None, attrs, [9]),
            make_plan(w, None, attrs, [9], fold_crop=True),
        )
        assert folded.weight.shape[2] <= plain.weight.shape[2]
        assert folded.axes[0].conv_pad_begin >= 0 and folded.axes[0].crop_begin in (
            0,
            plain.axes[0].crop_begin,
        )


@pytest.mark.parametrize("order", ["CRD", "DCR", "LCR"])
def test_row_channels_match_bias(order):
    """``row_channels`` maps every Conv row to the output channel its bias comes from."""
    w = _x((2, 3, 4, 3))
    b = np.arange(3, dtype=np.float32)
    plan = make_plan(w, b, ConvTransposeAttrs(strides=[2, 3], pads=[1, 0, 1, 0]), order=order)
    assert np.array_equal(plan.bias, b[plan.row_channels()])
    assert sorted(plan.row_channels().tolist()) == sorted(list(range(3)) * 6)


def test_per_phase_stores_only_real_taps():
    """ENet k3 s2: 4 Convs with 2x2, 2x1, 1x2 and 1x1 kernels (9 taps instead of 16)."""
    from deconv2sub.plan.phases import macs_ratio

    w = _x((4, 3, 3, 3))
    m = convtranspose_model(
        [1, 4, 6, 6], w, _x((3,)), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]
    )
    converted, report = _check(m, [{"X": _x((1, 4, 6, 6))}], ConvertOptions(strategy="per_phase"))
    kernels = sorted(tuple(n.attribute[[a.name for a in n.attribute].index("kernel_shape")].ints)
                     for n in converted.graph.node if n.op_type == "Conv")
    assert kernels == [(1, 1), (1, 2), (2, 1), (2, 2)]
    plan = make_plan(
        w,
        None,
        ConvTransposeAttrs(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        fold_crop=True,
    )
    assert macs_ratio(plan) == 9 / 16


def test_per_phase_folds_every_crop():
    """k4 s2 p1 (DCGAN): no Slice.

    The shared kernel would grow to 3 taps, but each phase Conv keeps its 2.
    """
    m = convtranspose_model(
        [1, 4, 6, 6], _x((4, 3, 4, 4)), _x((3,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = _check(m, [{"X": _x((1, 4, 6, 6))}], ConvertOptions(strategy="per_phase"))
    assert "Slice" not in op_types(converted)
    kernels = {tuple(n.attribute[[a.name for a in n.attribute].index("kernel_shape")].ints)
               for n in converted.graph.node if n.op_type == "Conv"}
    assert kernels == {(2, 2)}


@pytest.mark.parametrize("in_shape,kernel,strides,pads,op,convs", [
    ([1, 3, 4, 5], (16, 16), (8, 8), (4, 4, 4, 4), (0, 0), 4),  # FCN: 2 groups of 4 phases per axis
    ([1, 3, 9], (16,), (8,), (4, 4), (0,), 2),  # HiFi-GAN k16 s8 p4
    # s3, crop 1: runs of 2 and 1 phases -> one Conv per phase
    ([1, 3, 9], (5,), (3,), (1, 1), (0,), 3),
    # odd output width: an end crop remains
    ([1, 3, 4, 5], (3, 4), (2, 2), (1, 1, 0, 2), (1, 0), 4),
    (["N", 3, "H", "W"], (4, 4), (2, 2), (1, 1, 1, 1), (0, 0), 4),
])
def test_phase_groups(in_shape, kernel, strides, pads, op, convs):
    """Phases sharing a kernel span share a Conv; begin crops always fold away."""
    w = _x((3, 2) + kernel)
    m = convtranspose_model(
        in_shape, w, _x((2,)), strides=list(strides), pads=list(pads), output_padding=list(op)
    )
    shapes = [[1 if isinstance(d, str) else d for d in in_shape]]
    if any(isinstance(d, str) for d in in_shape):
        shapes.append([2, 3, 7, 3])
    converted, report = _check(
        m, [{"X": _x(s)} for s in shapes], ConvertOptions(strategy="per_phase")
    )
    assert op_types(converted).count("Conv") == convs
    crop = report.nodes[0].crop
    assert crop is None or all(b == 0 and e < s for (b, e), s in zip(crop, strides))
    if crop is None and isinstance(in_shape[2], int):
        assert "Slice" not in op_types(converted)


def test_gemm_and_gather_emissions():
    """U-Net k2 s2, batch 1: pointwise_gemm is one Gemm + one 2-D Transpose + one Gather.

    The Gather writes the output (no Reshape after it). The ONNX Runtime rule takes the Conv +
    transpose + row Gather instead (the Gemm form measured slower), also with a BatchNormalization
    after it (which the Conv absorbs).
    """
    w = _x((4, 3, 2, 2))
    gemm = ConvertOptions(strategy="pointwise_gemm")
    m = convtranspose_model([1, 4, 6, 8], w, _x((3,)), strides=[2, 2])
    converted, report = _check(m, [{"X": _x((1, 4, 6, 8))}], gemm)
    assert op_types(converted) == ["Reshape", "Gemm", "Reshape", "Transpose", "Reshape", "Gather"]
    assert report.nodes[0].strategy == "pointwise_gemm"
    converted, report = _check(m, [{"X": _x((1, 4, 6, 8))}], ORT_RULE)
    assert report.nodes[0].strategy == "transpose_gather" and "Gemm" not in op_types(converted)
    m = _chain_model([1, 4, 6, 8], w, _x((M,)), [_bn(), ("Relu", [], {})], dict(strides=[2, 2]))
    converted, report = _check(m, [{"X": _x((1, 4, 6, 8))}], ORT_RULE)
    assert report.nodes[0].strategy == "transpose_gather" and "Gemm" not in op_types(converted)
    assert [s.split()[0] for s in report.nodes[0].sunk] == ["BatchNormalization", "Relu"]
    # a symbolic batch: no Gemm (its fallback); symbolic spatial sizes: no Gather (two-stage)
    m = convtranspose_model(["N", 4, 6, 8], w, _x((3,)), strides=[2, 2])
    converted, report = _check(m, [{"X": _x((1, 4, 6, 8))}, {"X": _x((2, 4, 6, 8))}], gemm)
    assert "Gemm" not in op_types(converted) and "Gather" in op_types(converted)
    m = convtranspose_model(["N", 4, "H", "W"], w, _x((3,)), strides=[2, 2])
    converted, report = _check(m, [{"X": _x((1, 4, 6, 8))}, {"X": _x((2, 4, 5, 3))}], ORT_RULE)
    assert "Gather" not in data_op_types(converted)
    assert report.nodes[0].shuffle == "two-stage Transpose"
    # pointwise_gemm without its Gemm and Gather (symbolic sizes): one Transpose, reported so
    converted, report = _check(m, [{"X": _x((1, 4, 6, 8))}, {"X": _x((2, 4, 5, 3))}], gemm)
    assert data_op_types(converted).count("Transpose") == 1
    assert report.nodes[0].shuffle == "Transpose"


def test_gather_folds_the_crop_of_leading_axes():
    """DCGAN k4 s2 p1: the H crop is done by the Gather's indices, only W keeps a Slice."""
    m = convtranspose_model([1, 4, 5, 6], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = _check(
        m, [{"X": _x((1, 4, 5, 6))}], ConvertOptions(strategy="transpose_gather")
    )
    (sl,) = [n for n in converted.graph.node if n.op_type == "Slice"]
    axes = [numpy_helper.to_array(i) for i in converted.graph.initializer if i.name == sl.input[3]][
        0
    ]
    assert axes.tolist() == [3]


@pytest.mark.parametrize(
    "target,expected",
    [
        ("onnxruntime", {"unet": "transpose_gather", "enet": "per_phase", "dcgan": "per_phase"}),
        (
            "openvino",
            {
                "unet": "channels_last",
                "enet": "per_phase_channels_last",
                "dcgan": "per_phase_channels_last",
            },
        ),
    ],
)
def test_default_rule_per_target(target, expected):
    """Each target's default rule picks its emission for U-Net, ENet and DCGAN nodes."""
    models = {
        "unet": convtranspose_model([1, 4, 6, 6], _x((4, 3, 2, 2)), None, strides=[2, 2]),
        "enet": convtranspose_model(
            [1, 4, 6, 6],
            _x((4, 3, 3, 3)),
            None,
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        ),
        "dcgan": convtranspose_model(
            [1, 4, 6, 6], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1]
        ),
    }
    for name, m in models.items():
        converted, report = _check(m, [{"X": _x((1, 4, 6, 6))}], ConvertOptions(target=target))
        assert report.nodes[0].strategy == expected[name], (name, report.nodes[0].strategy_reason)
        if target == "openvino":
            assert report.nodes[0].shuffle == "channels-last Transpose"
    with pytest.raises(ValueError, match="unknown target"):
        deconv2sub.convert_model(models["unet"], ConvertOptions(target="no_such_target"))


def test_sunk_operands_from_constant_nodes_leave_no_dead_constant():
    """Operands produced by Constant nodes are copied onto the moved op.

    The Constant nodes then die and are removed (ONNX Runtime would warn about unused nodes).
    """
    w = _x((3, M, 4, 4))
    nodes = [
        helper.make_node("ConvTranspose", ["X", "W"], ["t0"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["shift"], value=numpy_helper.from_array(_x((M, 1, 1)))),
        helper.make_node("Add", ["t0", "shift"], ["t1"]),
        helper.make_node("Constant", [], ["lo"], value_float=0.0),
        helper.make_node("Clip", ["t1", "lo"], ["Y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        [numpy_helper.from_array(w, "W")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for strategy in ("default", "per_phase"):
        converted, report = _check(m, [{"X": _x((1, 3, 5, 5))}], ConvertOptions(strategy=strategy))
        assert [s.split()[0] for s in report.nodes[0].sunk] == ["Add", "Clip"]
        assert "Constant" not in op_types(converted)


@pytest.mark.parametrize("batch", [1, 2])
def test_phase_convs_with_row_gather(batch):
    """DCGAN k4 s2 p1 (ONNX Runtime rule): 4 phase Convs, one 2-D Transpose, one Gather on axis 0.

    The Gather's indices carry the batch; no Slice. A symbolic batch falls back to the two-stage
    transpose.
    """
    w = _x((4, 3, 4, 4))
    m = convtranspose_model([batch, 4, 5, 6], w, _x((3,)), strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = _check(m, [{"X": _x((batch, 4, 5, 6))}], ORT_RULE)
    assert (
        report.nodes[0].strategy == "per_phase"
        and report.nodes[0].shuffle == "Transpose + row Gather"
    )
    assert op_types(converted)[-4:] == ["Reshape", "Transpose", "Reshape", "Gather"]
    (gather,) = [n for n in converted.graph.node if n.op_type == "Gather"]
    indices = [
        numpy_helper.to_array(i) for i in converted.graph.initializer if i.name == gather.input[1]
    ][0]
    assert indices.shape == (batch, 3, 10)
    m = convtranspose_model(["N", 4, 5, 6], w, _x((3,)), strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = _check(m, [{"X": _x((1, 4, 5, 6))}, {"X": _x((3, 4, 5, 6))}], ORT_RULE)
    # one Conv; its Gather (axis 2) needs no batch
    assert report.nodes[0].strategy == "transpose_gather"


def test_gather_emissions_run_on_openvino():
    """The ONNX Runtime rule's models must run on OpenVINO too.

    A Gather on axis 1 with 2-D indices followed by a Conv fails OpenVINO's CPU plugin: the Gathers
    use axis 2 or 0.
    """
    ov = pytest.importorskip("openvino")

    w1, w2 = _x((4, 3, 4, 4)), _x((3, 2, 3, 3))
    inits = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")]
    nodes = [
        helper.make_node("ConvTranspose", ["X", "W1"], ["a"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node(
            "ConvTranspose",
            ["b", "W2"],
            ["Y"],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 4, 5, 6])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 2, 20, 24])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    converted, _ = _check(m, [{"X": _x((2, 4, 5, 6))}], ORT_RULE)
    assert "Gather" in op_types(converted)
    x = _x((2, 4, 5, 6))
    core = ov.Core()
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}  # CPUs with bf16 would otherwise compute in bf16
    ref = core.compile_model(core.read_model(m.SerializeToString(), b""), "CPU", f32)({0: x})[0]
    got = core.compile_model(core.read_model(converted.SerializeToString(), b""), "CPU", f32)(
        {0: x}
    )[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_gather_falls_back_when_its_indices_would_be_big(monkeypatch):
    """Too many Gather indices fall back to the two-stage Transpose; indices are int32."""
    import deconv2sub.plan.layout as layout

    monkeypatch.setattr(layout, "MAX_GATHER_INDICES", 8)
    m = convtranspose_model(
        [1, 4, 5, 6], _x((4, 3, 3, 3)), _x((3,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = _check(m, [{"X": _x((1, 4, 5, 6))}], ORT_RULE)
    assert "Gather" not in data_op_types(converted)
    assert report.nodes[0].shuffle == "two-stage Transpose"
    monkeypatch.undo()
    converted, report = _check(m, [{"X": _x((1, 4, 5, 6))}], ORT_RULE)
    (g,) = [n for n in converted.graph.node if n.op_type == "Gather"]
    assert [i.data_type for i in converted.graph.initializer if i.name == g.input[1]] == [
        TensorProto.INT32
    ]
