"""Quantized (QDQ) ConvTranspose: the weight (and bias) come from ``DequantizeLinear`` of constants.

In the QDQ format a quantized ConvTranspose is
``DQ(x_q) → ConvTranspose(DQ(w_q, s_w, z_w), DQ(b_q)) → Q → DQ``. To keep the rewritten model
quantized (and runtimes able to fuse it into an integer Conv) we rearrange the *quantized* weight
with the same sub-pixel plan and give the new Conv its own ``DequantizeLinear``:

* Taps are only copied, so the quantized values move unchanged. A position that receives no tap must
  dequantize to exactly 0, i.e. hold the **zero point** of its channel, not 0. We plan ``w_q - z_w``
  (as int32, where "no tap" = 0 is right) and add the zero point of each Conv output row back.
* ConvTranspose weights are ``[C, M/g, k...]``: per-channel quantization over output channels uses
  ``axis=1`` (one scale per ``M/g``, shared by the groups); the Conv weight ``[M*P, C/g, L...]``
  uses ``axis=0`` with one scale per row: the scale of output channel ``m`` repeated for each of its
  ``P`` phases (``np.repeat`` in CRD order, ``np.tile`` in DCR; :meth:`SubPixelPlan.row_channels` in
  general). Per-channel over input channels (``axis=0``) maps to the Conv's ``axis=1`` when
  ``group == 1``. Per-tensor works for any group. Blocked quantization (``block_size``) is declined
  with a reason.
* A quantized bias (``DQ(b_q int32, s_x*s_w)``) is repeated per phase with its scale and zero point.
* Activations: the input's QDQ pair is untouched. When the ConvTranspose output feeds a per-tensor
  ``QuantizeLinear``, the same Q/DQ pair is also put right after the new Conv. Shuffle and crop only
  move values, so ``Q(DQ(Q(v))) = Q(v)`` keeps the result exact, and a runtime sees the usual
  ``DQ → Conv → Q`` pattern it can run in integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .domains import is_default_op
from .operands import known_values

__all__ = ["QdqError", "Quantized", "read_dequantize", "weight_for_plan", "requantize_conv_output"]

WEIGHT_TYPES = {"int8", "uint8", "int16", "uint16", "int4", "uint4"}
BIAS_TYPES = WEIGHT_TYPES | {"int32"}
# Ops the shuffle and crop are made of: they only move values, so re-quantizing before them is
# exact.
_DATA_MOVEMENT = {
    "Gather",
    "DepthToSpace",
    "Reshape",
    "Transpose",
    "Slice",
    "Identity",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
}


class QdqError(Exception):
    """The quantized weight/bias cannot be rewritten; ``str()`` is the reason."""


@dataclass
class Quantized:
    """``DequantizeLinear(values, scale, zero_point, axis)`` with constant inputs."""

    values: np.ndarray
    scale: np.ndarray
    zero_point: Optional[np.ndarray]
    axis: Optional[int]  # normalised axis for per-channel, None for per-tensor
    attrs: Dict[str, object]  # other DequantizeLinear attributes to keep (e.g. output_dtype)
    node: gs.Node
    sources: List[gs.Node] = field(default_factory=list)  # nodes that produced the constants

    @property
    def float_dtype(self) -> np.dtype:
        """The dtype the DequantizeLinear produces (``output_dtype``, else the scale's)."""
        out = self.attrs.get("output_dtype")
        if out:
            return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(out)))
        return self.scale.dtype

    def zero_point_or_zero(self) -> np.ndarray:
        """The zero point, or zeros of the scale's shape and the values' dtype."""
        if self.zero_point is not None:
            return self.zero_point
        return np.zeros(self.scale.shape, dtype=self.values.dtype)

    def describe(self) -> str:
        """The quantization in words, e.g. "int8 per-channel (axis 0)"."""
        kind = "per-tensor" if self.axis is None else f"per-channel (axis {self.axis})"
        return f"{self.values.dtype.name} {kind}"


def is_dequantize(node: Optional[gs.Node]) -> bool:
    return is_default_op(node, "DequantizeLinear")


def read_dequantize(
    node: gs.Node,
    values_of: Callable[[gs.Tensor], Tuple[np.ndarray, List[gs.Node]]],
    allowed: set,
    what: str,
) -> Quantized:
    """Read a DequantizeLinear whose inputs are constants.

    ``values_of`` returns (array, producer nodes) or raises QdqError with a reason.
    """
    if len(node.inputs) < 2:
        raise QdqError(f"{what} DequantizeLinear '{node.name}' has no scale")
    q, q_src = values_of(node.inputs[0])
    scale, s_src = values_of(node.inputs[1])
    zp, z_src = (None, [])
    if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name != "":
        zp, z_src = values_of(node.inputs[2])
    if q.dtype.name not in allowed:
        raise QdqError(
            f"{what} is quantized as {q.dtype.name}, not supported ({', '.join(sorted(allowed))})"
        )
    attrs = {k: v for k, v in node.attrs.items() if k not in ("axis", "block_size")}
    if int(node.attrs.get("block_size", 0) or 0) != 0:
        raise QdqError(
            f"{what} uses blocked quantization (block_size), which the rewrite does not support"
        )
    if any(isinstance(v, gs.Node.AttributeRef) for v in node.attrs.values()):
        raise QdqError(f"{what} DequantizeLinear '{node.name}' uses function attributes")
    scale = np.asarray(scale)
    if zp is not None:
        zp = np.asarray(zp)
        if zp.shape != scale.shape:
            raise QdqError(
                f"{what} zero point shape {list(zp.shape)} differs from scale shape"
                f" {list(scale.shape)}"
            )
    axis = None
    if scale.size != 1:  # per-channel (a one-element scale is per-tensor, whatever its axis)
        axis = int(node.attrs.get("axis", 1))
        if axis < 0:
            axis += q.ndim
        if scale.ndim != 1 or not 0 <= axis < q.ndim or q.shape[axis] != scale.shape[0]:
            raise QdqError(
                f"{what} DequantizeLinear '{node.name}' has scale shape {list(scale.shape)} "
                f"that does not match axis {node.attrs.get('axis', 1)} of {list(q.shape)}"
            )
    return Quantized(np.asarray(q), scale, zp, axis, attrs, node, [node] + q_src + s_src + z_src)


def weight_for_plan(w: Quantized, group: int) -> np.ndarray:
    """The int32 weight to plan: ``w_q - z_w`` (so that a missing tap, 0, dequantizes to 0)."""
    q = w.values.astype(np.int32)
    if w.zero_point is None:
        return q
    zp = w.zero_point.astype(np.int32)
    if w.axis is None:
        return q - zp.reshape(())
    shape = [1] * q.ndim
    shape[w.axis] = -1
    if w.axis == 1:
        return q - zp.reshape(shape)
    if w.axis == 0:
        if group != 1:
            raise QdqError(
                "per-channel weight quantization over input channels (axis 0) needs group == 1"
            )
        return q - zp.reshape(shape)
    raise QdqError(
        f"per-channel weight quantization over a spatial axis ({w.axis}) is not supported"
    )


def check_weight(w: Quantized, group: int) -> None:
    if w.axis not in (None, 0, 1):
        raise QdqError(
            f"per-channel weight quantization over a spatial axis ({w.axis}) is not supported"
        )
    if w.axis == 0 and group != 1:
        raise QdqError(
            "per-channel weight quantization over input channels (axis 0) needs group == 1"
        )


def _row_channels(plan) -> np.ndarray:
    """Output channel m of every Conv output row.

    CRD: m*P + phase, DCR: phase*M + m, or whatever layout the plan reports.
    """
    if hasattr(plan, "row_channels"):
        return np.asarray(plan.row_channels())
    rows = np.arange(plan.out_channels * plan.phases)
    if plan.order == "CRD":
        return rows // plan.phases
    if plan.order == "DCR":
        return rows % plan.out_channels
    raise QdqError(f"unknown channel order {plan.order!r}")


def _dequantize_node(em, suffix: str, values, scale, zero_point, axis, attrs, dtype) -> gs.Variable:
    inputs = [em.const(f"{suffix}_quantized", values), em.const(f"{suffix}_scale", scale)]
    if zero_point is not None:
        inputs.append(em.const(f"{suffix}_zero_point", zero_point))
    out = em.var(suffix, dtype)
    node_attrs = dict(attrs)
    if axis is not None:
        node_attrs["axis"] = int(axis)
    em.node("DequantizeLinear", f"{suffix}_dequantize", inputs, [out], node_attrs)
    return out


def emit_weight(em, plan, w: Quantized) -> gs.Variable:
    """DequantizeLinear feeding the Conv.

    It dequantizes the planned ``w_q - z_w`` with the zero points added back per row.
    """
    shifted = plan.weight.astype(np.int32)
    channels = _row_channels(plan)
    scale, zp, axis = w.scale, w.zero_point, None
    if w.axis is None:
        if zp is not None:
            shifted = shifted + zp.astype(np.int32).reshape(())
    elif w.axis == 1:  # one scale per M/g, shared by the groups
        # output channel m -> index j = m % (M/g)
        per_m = np.tile(np.arange(w.scale.shape[0]), plan.group)
        index = per_m[channels]
        scale, axis = w.scale[index], 0
        if zp is not None:
            zp = zp[index]
            shifted = shifted + zp.astype(np.int32).reshape((-1,) + (1,) * (shifted.ndim - 1))
    else:  # axis 0: input channels; the Conv weight keeps them on axis 1 (group == 1)
        axis = 1
        if zp is not None:
            shifted = shifted + zp.astype(np.int32).reshape((1, -1) + (1,) * (shifted.ndim - 2))
    values = shifted.astype(w.values.dtype)
    return _dequantize_node(em, "subpixel_weight", values, scale, zp, axis, w.attrs, w.float_dtype)


def emit_bias(em, plan, b: Quantized) -> gs.Variable:
    """DequantizeLinear for the repeated bias (plan.bias holds the repeated quantized values)."""
    values = np.asarray(plan.bias).astype(b.values.dtype)
    scale, zp, axis = b.scale, b.zero_point, None
    if b.axis is not None:
        index = _row_channels(plan)
        scale, axis = b.scale[index], 0
        zp = None if zp is None else zp[index]
    return _dequantize_node(em, "subpixel_bias", values, scale, zp, axis, b.attrs, b.float_dtype)


def requantize_conv_output(
    graph: gs.Graph, y: gs.Tensor, unique: Callable[[str], str], base: str
) -> List[str]:
    """Re-quantize the new Conv's output like ``y``'s; return the new node names.

    If ``y`` (the kept ConvTranspose output) feeds exactly one per-tensor QuantizeLinear, put the
    same Q/DQ pair right after the new Conv (before shuffle/crop).
    """
    if len(y.outputs) != 1 or any(o is y for o in graph.outputs):
        return []
    q_node = y.outputs[0]
    if not is_default_op(q_node, "QuantizeLinear") or len(q_node.inputs) < 2:
        return []
    scale_t = q_node.inputs[1]
    scale = known_values(scale_t)
    if scale is None or scale.size != 1:
        return []
    zp_t = q_node.inputs[2] if len(q_node.inputs) > 2 and q_node.inputs[2].name != "" else None
    if zp_t is not None and known_values(zp_t) is None:
        return []
    if any(isinstance(v, gs.Node.AttributeRef) for v in q_node.attrs.values()):
        return []
    # Walk back from y through the crop/shuffle to the Conv.
    t, conv = y, None
    for _ in range(16):
        if not t.inputs:
            return []
        producer = t.inputs[0]
        if producer.op == "Conv":
            conv = producer
            break
        if producer.op not in _DATA_MOVEMENT:
            return []
        t = producer.inputs[0]
    if conv is None or conv.outputs[0] is y:
        return []
    conv_out = conv.outputs[0]
    dtype = conv_out.dtype
    q_out = gs.Variable(unique(f"{base}_subpixel_conv_q"), dtype=None)
    dq_out = gs.Variable(unique(f"{base}_subpixel_conv_dq"), dtype=dtype)
    for consumer in list(conv_out.outputs):
        for i, inp in enumerate(consumer.inputs):
            if inp is conv_out:
                consumer.inputs[i] = dq_out
    q_inputs = [conv_out, scale_t] + ([zp_t] if zp_t is not None else [])
    dq_inputs = [q_out, scale_t] + ([zp_t] if zp_t is not None else [])
    q_attrs = {k: v for k, v in q_node.attrs.items() if k != "axis"}
    new_q = gs.Node(
        "QuantizeLinear", unique(f"{base}/subpixel_conv_quantize"), q_attrs, q_inputs, [q_out]
    )
    new_dq = gs.Node(
        "DequantizeLinear", unique(f"{base}/subpixel_conv_dequantize"), {}, dq_inputs, [dq_out]
    )
    index = next(i for i, n in enumerate(graph.nodes) if n is conv)
    graph.nodes[index + 1 : index + 1] = [new_q, new_dq]
    return [new_q.name, new_dq.name]
