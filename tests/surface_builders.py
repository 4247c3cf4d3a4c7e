"""Small models for the validate / inspect / bench tests (IR 8, opset 17)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import deconv2sub


def two_deconv_model(shape=(1, 8, 5, 5), seed: int = 0) -> onnx.ModelProto:
    """X -> up1 (ConvTranspose k4 s2 p1, bias) -> relu1 -> up2 (k3 s2 p1 op1) -> tanh -> out."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 4, 4, 4)) * 0.2).astype(np.float32)
    b1 = rng.standard_normal(4).astype(np.float32)
    w2 = (rng.standard_normal((4, 2, 3, 3)) * 0.2).astype(np.float32)
    nodes = [
        helper.make_node(
            "ConvTranspose",
            ["x", "w1", "b1"],
            ["y1"],
            name="up1",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["y1"], ["r1"], name="relu1"),
        helper.make_node(
            "ConvTranspose",
            ["r1", "w2"],
            ["y2"],
            name="up2",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        ),
        helper.make_node("Tanh", ["y2"], ["out"], name="tanh"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_deconv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def converted(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` converted without sinking (every ConvTranspose output stays)."""
    # sink=False: keep every ConvTranspose output tensor (y1, y2) in the converted model, so that
    # faults planted in a rewritten node are localised to it (the default moves the Relu/Tanh that
    # follow above the shuffle, and y1/y2 then no longer exist).
    out, report = deconv2sub.convert_model(model, deconv2sub.ConvertOptions(sink=False))
    assert report.rewritten
    return out


def perturb_conv_weight(model: onnx.ModelProto, conv_name: str, factor: float = 1.01,
                        element: Optional[str] = "largest") -> onnx.ModelProto:
    """A copy with the weight of Conv ``conv_name`` scaled by ``factor``.

    One element (the largest in magnitude) or, with ``element=None``, the whole tensor.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    node = next(n for n in out.graph.node if n.name == conv_name and n.op_type == "Conv")
    weight = node.input[1]
    for i, t in enumerate(out.graph.initializer):
        if t.name == weight:
            a = numpy_helper.to_array(t).copy()
            if element is None:
                a *= factor
            else:
                a.flat[int(np.argmax(np.abs(a)))] *= factor
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, weight))
            return out
    raise AssertionError(f"weight of {conv_name} is not an initializer")


def rename_output(model: onnx.ModelProto, old: str, new: str) -> onnx.ModelProto:
    """A copy of ``model`` with tensor ``old`` renamed ``new`` where nodes produce it."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for n in out.graph.node:
        for i, o in enumerate(n.output):
            if o == old:
                n.output[i] = new
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
    for o in out.graph.output:
        if o.name == old:
            o.name = new
    return out


def add_chain_model(length: int, bump_at: Optional[int] = None, shape=(1, 4)) -> onnx.ModelProto:
    """X -> Add(c0) -> t0 -> Add(c1) -> t1 ... -> out.

    Constant c_k is 0.1, or 0.2 at ``bump_at``.
    """
    nodes, inits = [], []
    prev = "x"
    for k in range(length):
        value = np.full(shape, 0.2 if k == bump_at else 0.1, np.float32)
        inits.append(numpy_helper.from_array(value, f"c{k}"))
        out = "out" if k == length - 1 else f"t{k}"
        nodes.append(helper.make_node("Add", [prev, f"c{k}"], [out], name=f"add{k}"))
        prev = out
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, list(shape))],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def save(model: onnx.ModelProto, path) -> str:
    """Save ``model`` at ``path``; return the path as a string."""
    onnx.save(model, str(path))
    return str(path)
