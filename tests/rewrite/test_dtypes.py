"""float16, float64 and bfloat16 models: converted in their own dtype.

Verified where ORT CPU can run them, otherwise converted, reported as not verified (exit 0), and
checked here with the ONNX reference.
"""

from __future__ import annotations

import json
import sys

import ml_dtypes
import numpy as np
import onnx
import pytest
from builders import convtranspose_model, op_types, run
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import deconv2sub
from deconv2sub.cli import main

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(3))


BF16 = np.dtype(ml_dtypes.bfloat16)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _model(dtype, opset=17, ir_version=8, in_shape=("N", 3, 5, 5), bias=True, **attrs):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w = RNG.standard_normal((3, 2, 4, 4)).astype(dtype)
    inits = [numpy_helper.from_array(w, "W")]
    inputs = ["X", "W"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(2).astype(dtype), "B"))
        inputs.append("B")
    attrs = {"strides": [2, 2], "pads": [1, 1, 0, 0], "output_padding": [1, 1], **attrs}
    node = helper.make_node("ConvTranspose", inputs, ["Y"], name="up", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", elem, list(in_shape))],
        [helper.make_tensor_value_info("Y", elem, ["n", "c", "h", "w"])],
        inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )


def _reference_equal(original, converted, x, tol):
    ref = ReferenceEvaluator(original).run(None, {"X": x})[0]
    got = ReferenceEvaluator(converted).run(None, {"X": x})[0]
    assert ref.dtype == got.dtype == x.dtype and ref.shape == got.shape
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(np.float64), rtol=tol, atol=tol)


def test_float16_end_to_end(tmp_path):
    """A float16 model converts and verifies through the CLI, staying float16."""
    m = _model(np.float16)
    p = tmp_path / "f16.onnx"
    onnx.save(m, p)
    r = _invoke("convert", p, "-o", tmp_path / "o.onnx", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["verification"]["status"] == "PASSED" and len(data["verification"]["trials"]) == 2
    out = onnx.load(tmp_path / "o.onnx")
    assert {i.data_type for i in out.graph.initializer if len(i.dims) == 4} == {TensorProto.FLOAT16}
    x = RNG.standard_normal((2, 3, 5, 5)).astype(np.float16)
    got, ref = run(out, {"X": x})[0], run(m, {"X": x})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=1e-2, atol=1e-2)


def test_float16_3d_grouped():
    """A grouped 3-D float16 ConvTranspose matches ORT."""
    w = RNG.standard_normal((4, 1, 3, 2, 3)).astype(np.float16)
    m = convtranspose_model(
        [1, 4, 3, 4, 3],
        w,
        RNG.standard_normal(4).astype(np.float16),
        strides=[2, 2, 1],
        pads=[1, 0, 1, 0, 1, 0],
        output_padding=[1, 0, 0],
        group=4,
    )
    converted, report = deconv2sub.convert_model(m)
    assert report.rewritten and "ConvTranspose" not in op_types(converted)
    x = RNG.standard_normal((1, 4, 3, 4, 3)).astype(np.float16)
    np.testing.assert_allclose(run(converted, {"X": x})[0].astype(np.float32),
                               run(m, {"X": x})[0].astype(np.float32), rtol=1e-2, atol=1e-2)


def test_float64_converted_not_verified(tmp_path):
    """float64 converts but is reported NOT VERIFIED (ORT CPU lacks the kernel)."""
    m = _model(np.float64)
    p = tmp_path / "f64.onnx"
    onnx.save(m, p)
    r = _invoke("convert", p, "-o", tmp_path / "o.onnx", "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["verification"]
    assert (
        v["status"] == "NOT VERIFIED"
        and "float64" in v["unavailable"]
        and "CPU" in v["unavailable"]
    )
    assert "warning: the rewrite was NOT verified" in r.output
    out = onnx.load(tmp_path / "o.onnx")
    assert "ConvTranspose" not in op_types(out)
    _reference_equal(m, out, RNG.standard_normal((1, 3, 5, 5)), tol=1e-12)


def test_bfloat16_opset22_converted_not_verified(tmp_path):
    """bfloat16 at opset 22 converts, stays bfloat16, and is reported NOT VERIFIED."""
    m = _model(BF16, opset=22, ir_version=10)
    onnx.checker.check_model(m, full_check=True)
    p = tmp_path / "bf16.onnx"
    onnx.save(m, p)
    r = _invoke("convert", p, "-o", tmp_path / "o.onnx", "--json")
    assert r.exit_code == 0, r.output
    assert "[W]" not in r.output  # onnx-graphsurgeon's bfloat16 warnings stay out of the output
    v = json.loads(r.stdout)["verification"]
    assert v["status"] == "NOT VERIFIED" and "bfloat16" in v["unavailable"]
    out = onnx.load(tmp_path / "o.onnx")
    assert "ConvTranspose" not in op_types(out) and out.opset_import[0].version == 22
    conv_w = next(i for i in out.graph.initializer if i.name.endswith("subpixel_weight"))
    assert conv_w.data_type == TensorProto.BFLOAT16
    # Taps are copied, never computed: the reference implementation agrees to bfloat16 rounding of
    # sums.
    _reference_equal(m, out, RNG.standard_normal((1, 3, 5, 5)).astype(BF16), tol=0.1)


def test_bfloat16_before_opset22_is_invalid_input(tmp_path):
    """ConvTranspose accepts bfloat16 only from opset 22.

    An older model is rejected with one line, exit 2.
    """
    m = _model(BF16, opset=17, ir_version=8)
    p = tmp_path / "bf16_old.onnx"
    onnx.save(m, p)
    r = _invoke("convert", p, "-o", tmp_path / "o.onnx")
    assert r.exit_code == 2, r.output
    assert r.output.startswith("deconv2sub: error:") and "not a valid ONNX model" in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize("dtype", [np.float16, np.float64, BF16])
def test_weight_dtype_kept_by_library(dtype):
    """The Conv weight keeps the model's dtype and the output passes the checker."""
    opset, ir = (22, 10) if dtype == BF16 else (17, 8)
    m = _model(dtype, opset=opset, ir_version=ir, bias=False)
    converted, report = deconv2sub.convert_model(m)
    assert report.rewritten
    conv_w = next(i for i in converted.graph.initializer if i.name.endswith("subpixel_weight"))
    assert conv_w.data_type == helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    onnx.checker.check_model(converted, full_check=True)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_weight_is_left_alone(bad):
    """Exactness holds for finite weights only.

    The Conv also multiplies zero taps and zero padding, and 0 * inf = NaN would reach cells the
    ConvTranspose computes without that tap.
    """
    w = RNG.standard_normal((3, 2, 4, 4)).astype(np.float32)
    w[1, 0, 2, 3] = bad
    m = convtranspose_model([1, 3, 5, 5], w, None, strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = deconv2sub.convert_model(m)
    assert not report.rewritten and report.skipped[0].code == "weight_not_finite"
    assert op_types(converted) == ["ConvTranspose"]
