"""Test model builders and the reference check.

ORT running the ORIGINAL ConvTranspose is the oracle.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ort.set_default_logger_severity(3)

#: the repository root (tests/ is one level below it, whichever test folder imports this)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NP_TO_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
              np.dtype(np.float64): TensorProto.DOUBLE}


def convtranspose_model(
    in_shape,
    weight,
    bias=None,
    *,
    opset=17,
    ir_version=8,
    weight_as="initializer",
    name="deconv",
    **attrs,
) -> onnx.ModelProto:
    """A one-node model X -> ConvTranspose -> Y.

    ``in_shape`` entries may be strings (symbolic dims).
    """
    weight = np.asarray(weight)
    elem = NP_TO_ONNX[weight.dtype]
    nodes, inits = [], []
    if weight_as == "initializer":
        inits.append(numpy_helper.from_array(weight, "W"))
    elif weight_as == "constant":
        nodes.append(
            helper.make_node(
                "Constant", [], ["W"], value=numpy_helper.from_array(weight, "Wc"), name="W_const"
            )
        )
    inputs = ["X", "W"]
    graph_inputs = [helper.make_tensor_value_info("X", elem, list(in_shape))]
    if weight_as == "input":
        graph_inputs.append(helper.make_tensor_value_info("W", elem, list(weight.shape)))
    if bias is not None:
        inits.append(numpy_helper.from_array(np.asarray(bias, dtype=weight.dtype), "B"))
        inputs.append("B")
    attrs = {k: v for k, v in attrs.items() if v is not None}
    nodes.append(helper.make_node("ConvTranspose", inputs, ["Y"], name=name, **attrs))
    out_shape = [f"y{i}" for i in range(len(in_shape))]
    graph = helper.make_graph(
        nodes, "g", graph_inputs, [helper.make_tensor_value_info("Y", elem, out_shape)], inits
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )


def run(model: onnx.ModelProto, feeds: dict) -> list:
    """Outputs of ``model`` on ``feeds`` with ONNX Runtime's CPU provider, unoptimised."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_equivalent(original: onnx.ModelProto, converted: onnx.ModelProto, feeds: dict, rel=2e-5):
    """Outputs of the converted model equal ORT's ConvTranspose outputs to float rounding."""
    ref = run(original, feeds)
    got = run(converted, feeds)
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.shape == g.shape, (r.shape, g.shape)
        scale = max(float(np.max(np.abs(r))) if r.size else 0.0, 1.0)
        err = float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64)))) if r.size else 0.0
        assert err <= rel * scale, f"max abs err {err} (scale {scale})"


def op_types(model: onnx.ModelProto) -> list:
    """Op types of the main graph's nodes, in order."""
    return [n.op_type for n in model.graph.node]


def data_op_types(model: onnx.ModelProto) -> list:
    """``op_types`` without the run-time shape arithmetic's Gathers (of a dim of a ``Shape``)."""
    shapes = {n.output[0] for n in model.graph.node if n.op_type == "Shape"}
    return [n.op_type for n in model.graph.node
            if not (n.op_type == "Gather" and n.input[0] in shapes)]
