"""Matching: whether one ConvTranspose can be rewritten, and what the rewrite needs from it.

:func:`check` returns the node's :class:`deconv2sub.rewrite.material.NodeMaterial` (weight, bias,
attributes, sizes) or a :class:`deconv2sub.rewrite.refusal.Refusal` that says why the node stays
(weight known only at run time, unsupported dtype, mismatched shapes, ...).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import onnx_graphsurgeon as gs

from ..plan.subpixel import ConvTransposeAttrs
from . import qdq
from .material import NodeMaterial, Planner
from .operands import NoSource, source_values
from .refusal import Refusal

__all__ = ["FLOAT_DTYPES", "check", "quantized_values"]

FLOAT_DTYPES = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
try:  # onnx >= 1.15 reads bfloat16 tensors as ml_dtypes.bfloat16
    import ml_dtypes

    FLOAT_DTYPES.add(np.dtype(ml_dtypes.bfloat16))
except ImportError:  # pragma: no cover
    pass


def quantized_values(graph, opset: int, cache: Optional[dict]):
    """A reader of a DequantizeLinear's constant inputs (for ``qdq.read_dequantize``)."""

    def values_of(tensor):
        try:
            values, producers, _ = source_values(tensor, graph, opset, cache)
        except NoSource as err:
            raise qdq.QdqError(f"quantized tensor {err}") from None
        return values, producers

    return values_of


class _Operand:
    """A weight or bias as read by :func:`_read_operand`."""

    def __init__(self, values, quantized, sources, note):
        self.values, self.quantized, self.sources, self.note = values, quantized, sources, note


def _read_operand(tensor, what: str, graph, opset: int, cache) -> Union[_Operand, Refusal]:
    """Read a weight or bias.

    The values of the weight (``what="weight"``) or bias ``tensor``: a DequantizeLinear of
    constants (quantized), or a tensor known before run time (folded if need be).
    """
    types = qdq.WEIGHT_TYPES if what == "weight" else qdq.BIAS_TYPES
    try:
        producer = (
            tensor.inputs[0]
            if isinstance(tensor, gs.Variable) and len(tensor.inputs) == 1
            else None
        )
        if qdq.is_dequantize(producer):
            quant = qdq.read_dequantize(
                producer, quantized_values(graph, opset, cache), types, what
            )
            return _Operand(quant.values, quant, list(quant.sources), None)
        values, producers, note = source_values(tensor, graph, opset, cache)
        return _Operand(values, None, list(producers), note)
    except NoSource as err:
        return Refusal(f"{what} {err}", f"{what}_not_constant")
    except qdq.QdqError as err:
        return Refusal(str(err), "quantization")


def _ints(attrs: dict, key: str) -> Optional[List[int]]:
    value = attrs.get(key)
    return None if value is None else [int(v) for v in value]


def _attrs(node: gs.Node) -> ConvTransposeAttrs:
    a = node.attrs
    auto_pad = a.get("auto_pad") or "NOTSET"
    return ConvTransposeAttrs(
        strides=_ints(a, "strides"),
        dilations=_ints(a, "dilations"),
        pads=_ints(a, "pads"),
        output_padding=_ints(a, "output_padding"),
        output_shape=_ints(a, "output_shape"),
        auto_pad=auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad,
        group=int(a.get("group", 1)),
        kernel_shape=_ints(a, "kernel_shape"),
    )


def _node_refusal(node: gs.Node) -> Optional[Refusal]:
    """What makes the node unreadable before its operands are looked at."""
    if len(node.inputs) < 2 or node.inputs[1] is None or node.inputs[1].name == "":
        return Refusal("ConvTranspose has no weight input", "no_weight")
    if not node.outputs:
        return Refusal("ConvTranspose has no output", "no_output")
    for key, value in node.attrs.items():
        if isinstance(value, gs.Node.AttributeRef):
            return Refusal(
                f"attribute '{key}' refers to a function attribute (known only per call)",
                "attribute_reference",
            )
    return None


def _weight_refusal(weight: _Operand, group: int) -> Optional[Refusal]:
    """What makes the weight's values unusable."""
    if weight.quantized is not None:
        try:
            qdq.check_weight(weight.quantized, group)
        except qdq.QdqError as err:
            return Refusal(str(err), "quantization")
        return None
    if weight.values.dtype not in FLOAT_DTYPES:
        return Refusal(
            f"weight dtype {weight.values.dtype} is not supported "
            "(float16/bfloat16/float32/float64)",
            "weight_dtype",
        )
    if not np.isfinite(weight.values).all():
        # The Conv multiplies its zero taps and zero padding too: 0 * inf = NaN would appear in
        # cells that the ConvTranspose computes without touching the infinite tap.
        return Refusal(
            "weight contains inf or NaN (the sub-pixel Conv would spread NaN into other cells)",
            "weight_not_finite",
        )
    return None


def _input_shape(x, shapes) -> Optional[list]:
    shape = None
    if isinstance(x, gs.Tensor) and x.shape is not None:
        shape = list(x.shape)
    if shapes is not None and x.name in shapes and shapes[x.name] is not None:
        shape = list(shapes[x.name])
    return shape


def _positive(v) -> Optional[int]:
    return int(v) if isinstance(v, (int, np.integer)) and v > 0 else None


def _read_bias(node: gs.Node, graph, opset: int, cache) -> Union[_Operand, Refusal, None]:
    """The node's bias (None without one), or why it cannot be used."""
    if len(node.inputs) <= 2 or node.inputs[2] is None or node.inputs[2].name == "":
        return None
    bias = _read_operand(node.inputs[2], "bias", graph, opset, cache)
    if isinstance(bias, Refusal):
        return bias
    quant_b = bias.quantized
    if quant_b is not None and (quant_b.axis not in (None, 0) or quant_b.values.ndim != 1):
        return Refusal(
            "quantized bias must be 1-D, per-tensor or per-channel on axis 0", "quantization"
        )
    return bias


def check(
    node: gs.Node,
    shapes: Optional[Dict[str, Sequence]] = None,
    *,
    graph: Optional[gs.Graph] = None,
    opset: int = 13,
    cache: Optional[dict] = None,
    sizes: Optional[Dict[str, Sequence]] = None,
    planner: Optional[Planner] = None,
) -> Union[NodeMaterial, Refusal]:
    """The node's material when it can be rewritten, else the Refusal that says why not.

    Weight and bias may be initializers, Constant node outputs, tensors computed from constants only
    (folded first), or DequantizeLinear of such constants (quantized QDQ weights: rewritten
    quantized). ``graph`` is the graph holding ``node``, ``opset`` its default-domain opset (for
    folding), ``cache`` the pass's folded tensors. ``sizes``: tensor shapes at the user's input
    shapes (``ConvertOptions.input_shapes``), kept apart from ``shapes`` as the material's size
    hint. ``planner``: what plans the node (default :func:`deconv2sub.plan.subpixel.make_plan`).
    """
    refusal = _node_refusal(node)
    if refusal is not None:
        return refusal
    x, w = node.inputs[0], node.inputs[1]
    weight = _read_operand(w, "weight", graph, opset, cache)
    if isinstance(weight, Refusal):
        return weight
    refusal = _weight_refusal(weight, int(node.attrs.get("group", 1) or 1))
    if refusal is not None:
        return refusal
    notes = (
        [f"quantized weight ({weight.quantized.describe()})"]
        if weight.quantized is not None
        else []
    )
    notes += [weight.note] if weight.note else []
    sources = list(weight.sources)
    bias = _read_bias(node, graph, opset, cache)
    if isinstance(bias, Refusal):
        return bias
    if bias is not None:
        sources += bias.sources
        notes += [bias.note.replace("weight", "bias", 1)] if bias.note else []
    n = weight.values.ndim - 2
    shape = _input_shape(x, shapes)
    in_spatial = None
    if shape is not None and len(shape) == n + 2:
        in_spatial = [_positive(v) for v in shape[2:]]
        c = shape[1]
        if isinstance(c, (int, np.integer)) and c > 0 and int(c) != weight.values.shape[0]:
            return Refusal(
                f"input has {c} channels but the weight expects {weight.values.shape[0]}",
                "channel_mismatch",
            )
    elif shape is not None:
        return Refusal(
            f"input rank {len(shape)} does not match the weight rank {weight.values.ndim}",
            "rank_mismatch",
        )
    material = NodeMaterial(
        weight.values,
        None if bias is None else bias.values,
        _attrs(node),
        in_spatial,
        notes=notes,
        sources=sources,
    )
    if planner is not None:
        material.planner = planner
    material.consumers = tuple(c.op for c in node.outputs[0].outputs)
    if shape is not None:
        material.batch = _positive(shape[0])
    _size_hint(material, (sizes or {}).get(x.name), n)
    quant_w = weight.quantized
    quant_b = None if bias is None else bias.quantized
    if quant_w is not None or quant_b is not None:
        _quantized_emission(material, node, quant_w, quant_b)
    return material


def _size_hint(material: NodeMaterial, shape: Optional[Sequence], rank: int) -> None:
    """Set the material's size hint.

    Set the material's size hint from ``shape`` (the input at the user's input shapes) when it
    has the node's rank.
    """
    known = [_positive(v) for v in (shape or [])]
    if len(known) != rank + 2:
        return
    material.batch_hint = known[0]
    material.size_hint = known[2:]


def _quantized_emission(material: NodeMaterial, node: gs.Node, quant_w, quant_b) -> None:
    """Plan ``w_q - z_w`` (int32) and emit DequantizeLinear nodes for the Conv's weight/bias."""
    if quant_w is not None:
        material.weight = qdq.weight_for_plan(quant_w, material.attrs.group)
        material.dtype = quant_w.float_dtype
    elif quant_b is not None:
        material.dtype = material.weight.dtype
    y = node.outputs[0]

    def emit_inputs(em, plan):
        if quant_w is not None:
            inputs = [qdq.emit_weight(em, plan, quant_w)]
        else:
            inputs = [em.const("subpixel_weight", plan.weight)]
        if plan.bias is not None:
            if quant_b is not None:
                inputs.append(qdq.emit_bias(em, plan, quant_b))
            else:
                inputs.append(em.const("subpixel_bias", plan.bias))
        return inputs

    material.emit_inputs = emit_inputs
    if quant_w is not None:
        material.after = lambda graph, unique, base: qdq.requantize_conv_output(
            graph, y, unique, base
        )
