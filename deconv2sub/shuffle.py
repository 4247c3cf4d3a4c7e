"""Emission of the periodic shuffle and the crop as ONNX nodes (onnx-graphsurgeon).

The Conv output is ``[N, M*P, Q1, ..., Qn]`` with channel ``m*P + phase`` ("CRD") or
``phase*M + m`` ("DCR"), ``phase`` row-major over ``(p1, ..., pn)``. The shuffle turns it into
``[N, M, Q1*s1, ..., Qn*sn]``:

* DepthToSpace when it can express it: 4-D tensors, one block size for both axes; mode CRD needs
  opset >= 11 (before that the only mode is DCR).
* Otherwise Reshape ``[N, M, s1..sn, Q1..Qn]`` (CRD) → Transpose to ``[N, M, Q1, s1, ..., Qn, sn]`` →
  Reshape ``[N, M, Q1*s1, ...]``. Shapes are constants where the spatial sizes are known (``0`` copies
  the batch, one ``-1`` covers one unknown size); with two or more unknown sizes they are computed at
  run time from ``Shape`` so that no size the original left symbolic gets baked in.

The crop is a Slice on the spatial axes: begin ``c0``, end ``-e`` (or "to the end"), which holds for
every input size since ``e`` does not depend on it. Before opset 10 Slice takes attributes.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import onnx_graphsurgeon as gs

from .plan import SubPixelPlan

INT64_MAX = np.iinfo(np.int64).max


class Emitter:
    """Creates uniquely named nodes and constants for one rewritten ConvTranspose."""

    def __init__(self, base: str, unique: Callable[[str], str], opset: int):
        self.base = base
        self.unique = unique
        self.opset = opset
        self.nodes: List[gs.Node] = []

    def const(self, suffix: str, values) -> gs.Constant:
        return gs.Constant(self.unique(f"{self.base}_{suffix}"), np.asarray(values))

    def var(self, suffix: str, dtype=None) -> gs.Variable:
        return gs.Variable(self.unique(f"{self.base}_{suffix}"), dtype=dtype)

    def node(self, op: str, suffix: str, inputs, outputs, attrs=None) -> gs.Node:
        n = gs.Node(op=op, name=self.unique(f"{self.base}/{suffix}"), attrs=attrs or {}, inputs=inputs, outputs=outputs)
        self.nodes.append(n)
        return n

    def int64s(self, suffix: str, values) -> gs.Constant:
        return self.const(suffix, np.asarray(values, dtype=np.int64))


def shuffle_kind(plan: SubPixelPlan, opset: int, prefer: str = "auto") -> str:
    """Which shuffle the plan gets: "none", "DepthToSpace(CRD)", "DepthToSpace(DCR)" or "Reshape/Transpose"."""
    if not plan.needs_shuffle:
        return "none"
    d2s_ok = plan.rank == 2 and plan.strides[0] == plan.strides[1]
    if prefer != "reshape" and d2s_ok:
        if plan.order == "DCR":
            return "DepthToSpace(DCR)"
        if opset >= 11:
            return "DepthToSpace(CRD)"
    return "Reshape/Transpose"


def emit_shuffle(
    em: Emitter,
    plan: SubPixelPlan,
    kind: str,
    x: gs.Variable,
    y: gs.Variable,
    in_spatial: Optional[Sequence[Optional[int]]],
) -> None:
    """Shuffle ``x`` (Conv output) into ``y``; ``in_spatial`` are the ConvTranspose input sizes (None = unknown)."""
    n = plan.rank
    if kind.startswith("DepthToSpace"):
        attrs = {"blocksize": plan.strides[0]}
        if em.opset >= 11:
            attrs["mode"] = "CRD" if kind.endswith("(CRD)") else "DCR"
        em.node("DepthToSpace", "subpixel_shuffle", [x], [y], attrs)
        return
    if kind != "Reshape/Transpose":
        raise ValueError(f"unknown shuffle kind {kind}")
    if plan.order != "CRD":
        raise ValueError("Reshape/Transpose shuffle expects CRD channel order")
    m = plan.out_channels
    s = list(plan.strides)
    q = [None] * n
    if in_spatial is not None:
        q = [None if i is None else i + a.growth for i, a in zip(in_spatial, plan.axes)]
    unknown = sum(v is None for v in q)
    perm = [0, 1]
    for a in range(n):
        perm += [2 + n + a, 2 + a]
    if unknown <= 1:
        shape1 = [0, m] + s + [-1 if v is None else v for v in q]
        shape2 = [0, m] + [-1 if v is None else v * st for v, st in zip(q, s)]
        shape1_t = em.int64s("shuffle_shape1", shape1)
        shape2_t = em.int64s("shuffle_shape2", shape2)
    else:
        full = em.var("shape", np.int64)
        em.node("Shape", "subpixel_shape", [x], [full])
        batch = em.var("shape_batch", np.int64)
        spatial = em.var("shape_spatial", np.int64)
        _slice(em, "subpixel_shape_batch", full, batch, [0], [1], [0])
        _slice(em, "subpixel_shape_spatial", full, spatial, [2], [2 + n], [0])
        scaled = em.var("shape_spatial_scaled", np.int64)
        em.node("Mul", "subpixel_shape_scale", [spatial, em.int64s("strides", s)], [scaled])
        shape1_t = em.var("shuffle_shape1", np.int64)
        shape2_t = em.var("shuffle_shape2", np.int64)
        em.node("Concat", "subpixel_shape1", [batch, em.int64s("shape_mid", [m] + s), spatial], [shape1_t], {"axis": 0})
        em.node("Concat", "subpixel_shape2", [batch, em.int64s("shape_m", [m]), scaled], [shape2_t], {"axis": 0})
    r1 = em.var("phases")
    em.node("Reshape", "subpixel_split_phases", [x, shape1_t], [r1])
    tr = em.var("interleaved")
    em.node("Transpose", "subpixel_interleave", [r1], [tr], {"perm": perm})
    em.node("Reshape", "subpixel_merge", [tr, shape2_t], [y])


def _slice(em: Emitter, suffix: str, x, y, starts, ends, axes) -> None:
    if em.opset >= 10:
        em.node(
            "Slice",
            suffix,
            [x, em.int64s(suffix + "_starts", starts), em.int64s(suffix + "_ends", ends), em.int64s(suffix + "_axes", axes)],
            [y],
        )
    else:
        em.node("Slice", suffix, [x], [y], {"starts": list(starts), "ends": list(ends), "axes": list(axes)})


def emit_crop(em: Emitter, plan: SubPixelPlan, x: gs.Variable, y: gs.Variable) -> List[List[int]]:
    """Slice the shuffled tensor ``x`` into ``y``; returns the per-axis [begin, end] crop."""
    starts, ends, axes = [], [], []
    for a, ax in enumerate(plan.axes):
        if ax.crop_begin or ax.crop_end:
            starts.append(ax.crop_begin)
            ends.append(-ax.crop_end if ax.crop_end else int(INT64_MAX))
            axes.append(2 + a)
    _slice(em, "subpixel_crop", x, y, starts, ends, axes)
    return [[ax.crop_begin, ax.crop_end] for ax in plan.axes]
