"""``output_shape`` beyond plain pads, checked against ONNX Runtime running the original.

* Longer than the full transposed output (negative total pad, ONNX's
  ``test_convtranspose_output_shape``): ONNX Runtime adds the extra cells at the end whatever
  ``auto_pad`` says, they receive no tap (bias only), and it accepts at most
  ``stride - 1 - output_padding`` of them per axis.
* With a symbolic input size: the pads depend on the run-time size, so the crop is computed at
  run time (opset >= 10, and only where the target allows dynamic shapes).

Every fixed strategy is run, since each emission folds the crop differently.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import assert_equivalent, convtranspose_model, op_types, run

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.rewrite.emissions.registry import NAMES as FIXED

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(4321)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(4321))


AUTO_PADS = ["NOTSET", "SAME_UPPER", "SAME_LOWER"]


def _x(shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _model(in_shape, kernel, strides, dilations, op, out, group, bias, auto_pad, opset=17):
    c, m_per_group = 4, 2
    w = _x((c, m_per_group) + tuple(kernel))
    b = _x((m_per_group * group,)) if bias else None
    attrs = dict(
        strides=list(strides),
        dilations=list(dilations),
        output_padding=list(op),
        output_shape=list(out),
        group=group,
    )
    if auto_pad != "NOTSET":
        attrs["auto_pad"] = auto_pad
    batch = "N" if any(isinstance(v, str) for v in in_shape) else 1
    return convtranspose_model(
        [batch, c] + list(in_shape), w, b, opset=opset, ir_version=7 if opset < 13 else 8, **attrs
    )


def _full(size, k, s, d, op):
    return s * (size - 1) + op + d * (k - 1) + 1


def _check_all_strategies(model, shapes):
    """Every fixed strategy rewrites the node, equal to ORT's ConvTranspose at every shape."""
    for name in FIXED:
        converted, report = deconv2sub.convert_model(model, ConvertOptions(strategy=name))
        assert report.rewritten and not report.skipped, (name, [n.reason for n in report.skipped])
        assert "ConvTranspose" not in op_types(converted), name
        onnx.checker.check_model(converted, full_check=True)
        for shape in shapes:
            assert_equivalent(model, converted, {"X": _x(shape)})


# ---- output_shape longer than the full transposed output -----------------------------------------
LONGER = [
    # spatial, kernel, strides, dilations, output_padding, extra cells per axis (< 0: shorter),
    # group, bias
    ((5,), (3,), (2,), (1,), (0,), (1,), 1, True),
    ((4,), (2,), (4,), (1,), (1,), (2,), 2, False),  # kernel < stride: empty phases
    ((3,), (3,), (3,), (2,), (1,), (1,), 1, True),  # dilation
    (
        (3, 3),
        (3, 3),
        (3, 2),
        (1, 1),
        (0, 0),
        (1, 1),
        1,
        True,
    ),  # ONNX's test_convtranspose_output_shape
    (
        (4, 5),
        (4, 3),
        (2, 3),
        (1, 2),
        (0, 1),
        (1, -3),
        2,
        False,
    ),  # one axis longer, one cropped (odd)
    ((3, 4), (2, 5), (4, 2), (1, 1), (1, 0), (2, 1), 1, True),
    ((2, 3, 3), (3, 2, 3), (2, 2, 3), (1, 1, 1), (0, 1, 0), (1, 0, 2), 1, True),
    ((2, 2, 3), (2, 3, 2), (3, 2, 2), (1, 1, 2), (1, 0, 0), (1, -1, 1), 2, False),
]


@pytest.mark.parametrize("auto_pad", AUTO_PADS)
@pytest.mark.parametrize("spatial,kernel,strides,dilations,op,extra,group,bias", LONGER)
def test_output_shape_longer_than_full_output(
    spatial, kernel, strides, dilations, op, extra, group, bias, auto_pad
):
    """output_shape past the full output (extra cells at the end) equals ORT, every strategy."""
    out = [
        _full(i, k, s, d, p) + e
        for i, k, s, d, p, e in zip(spatial, kernel, strides, dilations, op, extra)
    ]
    m = _model(spatial, kernel, strides, dilations, op, out, group, bias, auto_pad)
    assert run(m, {"X": _x((1, 4) + spatial)})[0].shape[2:] == tuple(out)  # ORT computes it
    _check_all_strategies(m, [(1, 4) + spatial])


@pytest.mark.parametrize("auto_pad", AUTO_PADS)
def test_output_shape_beyond_what_ort_accepts_is_declined(auto_pad):
    """``stride - output_padding`` extra cells: ORT rejects the node at run time; we decline it."""
    spatial, k, s, op = (5,), 3, 3, 1
    out = [_full(5, k, s, 1, op) + s - op]
    m = _model(spatial, (k,), (s,), (1,), (op,), out, 1, True, auto_pad)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument):
        run(m, {"X": _x((1, 4, 5))})
    converted, report = deconv2sub.convert_model(m)
    assert not report.rewritten and report.skipped[0].code == "plan"
    assert "ONNX Runtime accepts at most" in report.skipped[0].reason
    assert op_types(converted) == ["ConvTranspose"]


# ---- output_shape with symbolic input sizes: run-time crop ---------------------------------------
SYMBOLIC = [
    # input spatial (str: symbolic), kernel, strides, dilations, output_padding, output_shape,
    # group, bias, run-time spatial sizes (each gives a different total pad: odd ones, and
    # negative ones where ORT accepts a longer output)
    (["L"], (3,), (2,), (1,), (0,), (12,), 1, True, [(6,), (5,), (7,)]),  # totals 1, -1, 3
    (["L"], (3,), (3,), (2,), (1,), (20,), 2, False, [(6,), (7,), (8,)]),  # totals 1, 4, 7
    (["H", "W"], (3, 4), (2, 3), (1, 1), (1, 0), (11, 14), 1, True, [(5, 4), (6, 5), (7, 6)]),
    (["H", 5], (3, 3), (2, 2), (1, 1), (0, 0), (10, 8), 2, True, [(4, 5), (5, 5), (6, 5)]),
    ([4, "W"], (4, 3), (2, 2), (1, 2), (1, 1), (9, 12), 1, False, [(4, 5), (4, 6), (4, 8)]),
    (
        ["D", "H", "W"],
        (3, 2, 3),
        (2, 2, 1),
        (1, 1, 1),
        (0, 0, 0),
        (7, 7, 6),
        1,
        True,
        [(3, 3, 4), (4, 4, 5)],
    ),
]


@pytest.mark.parametrize("auto_pad", AUTO_PADS)
@pytest.mark.parametrize("spatial,kernel,strides,dilations,op,out,group,bias,sizes", SYMBOLIC)
def test_output_shape_with_symbolic_input_sizes(
    spatial, kernel, strides, dilations, op, out, group, bias, sizes, auto_pad
):
    """output_shape with symbolic input sizes (run-time crop) matches ORT at every shape."""
    m = _model(spatial, kernel, strides, dilations, op, out, group, bias, auto_pad)
    _check_all_strategies(m, [(1, 4) + s for s in sizes])


@pytest.mark.parametrize("opset,clamp", [(11, "Where"), (13, "Max")])
def test_symbolic_output_shape_default_emission_is_small(opset, clamp):
    """Default strategy: Conv, DepthToSpace and the run-time crop (int64 Max needs opset 12)."""
    m = _model(["H", "W"], (3, 3), (2, 2), (1, 1), (0, 0), (10, 9), 1, True, "NOTSET", opset=opset)
    converted, report = deconv2sub.convert_model(m)
    assert report.rewritten and report.nodes[0].strategy == "depth_to_space"
    ops = op_types(converted)
    assert (
        ops[:2] == ["Conv", "DepthToSpace"]
        and ops[-1] == "Slice"
        and clamp in ops
        and len(ops) <= 12
    )
    slice_node = converted.graph.node[-1]
    assert slice_node.input[1] not in {
        i.name for i in converted.graph.initializer
    }  # run-time starts
    for shape in [(1, 4, 4, 4), (2, 4, 5, 4), (1, 4, 6, 7)]:  # totals H: -1, 1, 3; W: 0, 0, 6
        assert_equivalent(m, converted, {"X": _x(shape)})


def test_symbolic_output_shape_declined_before_opset_10():
    """A run-time crop needs Slice with inputs: before opset 10 the node is kept, with a reason."""
    m = _model(["H", "W"], (3, 3), (2, 2), (1, 1), (0, 0), (10, 9), 1, True, "NOTSET", opset=9)
    converted, report = deconv2sub.convert_model(m)
    assert not report.rewritten and report.skipped[0].code == "runtime_crop"
    assert "opset >= 10" in report.skipped[0].reason
    assert op_types(converted) == ["ConvTranspose"]


def test_symbolic_output_shape_declined_without_dynamic_shapes():
    """A run-time crop is declined where dynamic shapes are off; known sizes still convert."""
    m = _model(["H", "W"], (3, 3), (2, 2), (1, 1), (0, 0), (10, 9), 1, True, "NOTSET")
    for options in (ConvertOptions(dynamic_shapes=False), ConvertOptions(target="ethos-u")):
        converted, report = deconv2sub.convert_model(m, options)
        assert not report.rewritten and report.skipped[0].code == "runtime_crop"
        assert "does not allow dynamic shapes" in report.skipped[0].reason
        assert op_types(converted) == ["ConvTranspose"]
    known = _model([5, 5], (3, 3), (2, 2), (1, 1), (0, 0), (10, 9), 1, True, "NOTSET")
    _, report = deconv2sub.convert_model(known, ConvertOptions(dynamic_shapes=False))
    assert report.rewritten  # known sizes: constant crop, nothing dynamic
