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
every input size since ``e`` does not depend on it. Before opset 10 Slice takes attributes. The one
exception, ``output_shape`` with a symbolic input size, gets its begin/end computed from the input's
run-time shape (:func:`emit_runtime_crop`, opset >= 10).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import onnx_graphsurgeon as gs

from ..plan.subpixel import SubPixelPlan

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


def emit_crop(em: Emitter, plan: SubPixelPlan, x: gs.Variable, y: gs.Variable,
              crops: Optional[Sequence[Sequence[int]]] = None) -> List[List[int]]:
    """Slice the shuffled tensor ``x`` into ``y``; returns the per-axis [begin, end] crop (``crops``:
    instead of the plan's, when part of it was done elsewhere)."""
    if crops is None:
        crops = [[ax.crop_begin, ax.crop_end] for ax in plan.axes]
    starts, ends, axes = [], [], []
    for a, (begin, end) in enumerate(crops):
        if begin or end:
            starts.append(begin)
            ends.append(-end if end else int(INT64_MAX))
            axes.append(2 + a)
    _slice(em, "subpixel_crop", x, y, starts, ends, axes)
    return [list(c) for c in crops]


def emit_runtime_crop(em: Emitter, plan: SubPixelPlan, x_in: gs.Tensor, x: gs.Variable,
                      y: gs.Variable, crops: Optional[Sequence[Sequence[int]]] = None) -> list:
    """Slice ``x`` into ``y`` when some axes (``plan.runtime_axes``: ``output_shape`` with a
    symbolic input size) are cut at run time. Their begin is the ConvTranspose's begin pad, computed
    from the run-time size ``I`` of ``x_in`` (the ConvTranspose input): ``t = max(0, s*I +
    offset)``, begin ``t - t // 2`` (``t // 2`` for SAME_UPPER); their end is ``begin +
    output_shape``. The other axes keep their constant crop (``crops``, default the plan's); one
    Slice does all. Needs opset >= 10 (Slice inputs). Returns the per-axis crop for the report,
    ``["run-time", out]`` on the run-time axes."""
    if em.opset < 10:
        raise ValueError("a run-time crop needs Slice with inputs (opset >= 10)")
    if crops is None:
        crops = [[ax.crop_begin, ax.crop_end] for ax in plan.axes]
    dyn = plan.runtime_axes
    axes = [plan.axes[a] for a in dyn]
    fixed = [a for a, (b, e) in enumerate(crops) if (b or e) and a not in dyn]

    def op(op_type: str, name: str, inputs, attrs=None, dtype=np.int64) -> gs.Variable:
        out = em.var(name, dtype)
        em.node(op_type, f"subpixel_{name}", inputs, [out], attrs)
        return out

    shape = em.var("input_shape", np.int64)
    em.node("Shape", "subpixel_input_shape", [x_in], [shape])
    sizes = em.var("input_sizes", np.int64)
    input_axes = em.int64s("input_axes", [2 + a for a in dyn])
    em.node("Gather", "subpixel_input_sizes", [shape, input_axes], [sizes], {"axis": 0})
    scaled = op("Mul", "pad_scaled", [sizes, em.int64s("pad_strides", [a.stride for a in axes])])
    offset = em.int64s("pad_offset", [a.runtime_total_offset for a in axes])
    total = op("Add", "pad_total", [scaled, offset])
    zero = em.int64s("pad_zero", [0] * len(dyn))
    if em.opset >= 12:  # Max takes int64 from opset 12; a longer output's cells go at the end
        clamped = op("Max", "pad_clamped", [total, zero])
    else:
        negative = op("Less", "pad_negative", [total, zero], dtype=np.bool_)
        clamped = op("Where", "pad_clamped", [negative, zero, total])
    two = em.int64s("pad_two", [2] * len(dyn))
    half = op("Div", "pad_half", [clamped, two])  # t >= 0: integer Div is floor division
    begin = half  # SAME_UPPER (one auto_pad per node: all run-time axes alike)
    if not axes[0].pad_upper:
        begin = op("Sub", "pad_rest", [clamped, half])
    end = op("Add", "crop_ends", [begin, em.int64s("crop_sizes", [a.runtime_out for a in axes])])
    starts, ends = begin, end
    if fixed:
        fixed_ends = [-crops[a][1] if crops[a][1] else int(INT64_MAX) for a in fixed]
        fixed_starts = em.int64s("crop_starts_fixed", [crops[a][0] for a in fixed])
        starts = op("Concat", "crop_starts_all", [fixed_starts, begin], {"axis": 0})
        ends = op("Concat", "crop_ends_all", [em.int64s("crop_ends_fixed", fixed_ends), end],
                  {"axis": 0})
    crop_axes = em.int64s("crop_axes", [2 + a for a in fixed + dyn])
    em.node("Slice", "subpixel_crop", [x, starts, ends, crop_axes], [y])
    return [["run-time", plan.axes[a].runtime_out] if a in dyn else list(crops[a])
            for a in range(plan.rank)]


# ---- shuffles as labelled permutations ---------------------------------------------------------------
# A tensor is described by its logical axes, outermost first, each a label and a size. A size is
# ``(factor, dims)``: ``factor`` times the product of the Conv output's dims ``dims`` (indices into
# ``[N, C', Q1, ..., Qn]``), so unknown (symbolic) sizes stay symbolic. A shuffle is then a permutation
# of labels, emitted as Reshape → Transpose → ... → Reshape. Axes of size 1 are dropped and runs of
# axes that stay adjacent are merged first, so every Transpose has the smallest possible rank: runtimes
# have fast paths for low-rank transposes (ONNX Runtime's 2-D float transpose is several times faster
# than its generic n-D one).

Size = tuple  # (factor: int, dims: tuple of Conv output dim indices)


def _size_mul(sizes) -> Size:
    factor, dims = 1, ()
    for f, d in sizes:
        factor *= f
        dims += tuple(d)
    return factor, tuple(sorted(dims))


def _known(size: Size) -> bool:
    return not size[1]


class _Shapes:
    """Emits shape tensors for Reshape, from the Conv output's run-time shape only when needed."""

    def __init__(self, em: Emitter, source: gs.Variable):
        self.em = em
        self.source = source
        self._shape = None
        self._dims: dict = {}

    def _dim(self, i: int) -> gs.Variable:
        if i not in self._dims:
            if self._shape is None:
                self._shape = self.em.var("shape", np.int64)
                self.em.node("Shape", "subpixel_shape", [self.source], [self._shape])
            v = self.em.var(f"shape_dim{i}", np.int64)
            _slice(self.em, f"subpixel_shape_dim{i}", self._shape, v, [i], [i + 1], [0])
            self._dims[i] = v
        return self._dims[i]

    def tensor(self, suffix: str, sizes) -> gs.Tensor:
        unknown = [s for s in sizes if not _known(s)]
        if len(unknown) <= 1:
            return self.em.int64s(suffix, [f if _known((f, d)) else -1 for f, d in sizes])
        parts = []
        for i, (factor, dims) in enumerate(sizes):
            if not dims:
                parts.append(self.em.int64s(f"{suffix}_{i}", [factor]))
                continue
            value = self._dim(dims[0])
            for j, d in enumerate(dims[1:]):
                prod = self.em.var(f"{suffix}_{i}_prod{j}", np.int64)
                self.em.node("Mul", f"subpixel_{suffix}_{i}_mul{j}", [value, self._dim(d)], [prod])
                value = prod
            if factor != 1:
                prod = self.em.var(f"{suffix}_{i}_scaled", np.int64)
                self.em.node("Mul", f"subpixel_{suffix}_{i}_scale", [value, self.em.int64s(f"{suffix}_{i}_f", [factor])], [prod])
                value = prod
            parts.append(value)
        out = self.em.var(suffix, np.int64)
        self.em.node("Concat", f"subpixel_{suffix}", parts, [out], {"axis": 0})
        return out


def _merge_axes(src: list, dst_labels: list) -> tuple:
    """Drop size-1 axes, merge runs that stay adjacent. Returns (merged src sizes, perm, merged dst sizes)."""
    src = [(label, size) for label, size in src if size != (1, ())]
    keep = {label for label, _ in src}
    dst = [label for label in dst_labels if label in keep]
    pos = {label: i for i, label in enumerate(dst)}
    groups: list = []  # runs of src axes consecutive in both orders
    for label, size in src:
        if groups and pos[label] == pos[groups[-1][-1][0]] + 1:
            groups[-1].append((label, size))
        else:
            groups.append([(label, size)])
    order = sorted(range(len(groups)), key=lambda g: pos[groups[g][0][0]])
    merged = [_size_mul(s for _, s in g) for g in groups]
    return merged, order, [merged[g] for g in order]


def _permute(em: Emitter, shapes: _Shapes, x: gs.Variable, src: list, dst_labels: list, suffix: str) -> gs.Variable:
    """Transpose ``x`` (logical axes ``src``) into the label order ``dst_labels``; returns the result
    (or ``x`` itself when the permutation only merges/splits axes)."""
    merged, perm, _ = _merge_axes(src, dst_labels)
    if perm == list(range(len(perm))):
        return x
    r = em.var(f"{suffix}_in")
    em.node("Reshape", f"subpixel_{suffix}_reshape", [x, shapes.tensor(f"{suffix}_shape", merged)], [r])
    t = em.var(f"{suffix}_out")
    em.node("Transpose", f"subpixel_{suffix}", [r], [t], {"perm": perm})
    return t


def conv_output_layout(plan: SubPixelPlan, in_spatial: Optional[Sequence[Optional[int]]], batch: Optional[int],
                       rows: Optional[list] = None) -> list:
    """Logical axes of the Conv output ``[N, rows..., Q1, ..., Qn]`` (``rows``: default plan.row_layout())."""
    n = plan.rank
    q = [None] * n if in_spatial is None else [None if i is None else i + a.growth for i, a in zip(in_spatial, plan.axes)]
    layout = [("N", (batch, ()) if batch else (1, (0,)))]
    layout += [(name, (size, ())) for name, size in (plan.row_layout() if rows is None else rows)]
    layout += [(f"Q{a}", (v, ()) if v is not None else (1, (2 + a,))) for a, v in enumerate(q)]
    return layout


def output_labels(plan: SubPixelPlan) -> list:
    labels = ["N", "M"]
    for a, ax in enumerate(plan.axes):
        labels += [f"Q{a}", f"S{a}"]
    return labels


def emit_permuted_shuffle(
    em: Emitter,
    plan: SubPixelPlan,
    stages: Sequence[Sequence[str]],
    x: gs.Variable,
    y: gs.Variable,
    in_spatial: Optional[Sequence[Optional[int]]],
    batch: Optional[int],
    rows: Optional[list] = None,
    channels_last: bool = False,
) -> None:
    """Shuffle ``x`` (the Conv output) into ``y`` through the label orders ``stages`` (the last one must be
    :func:`output_labels`), each a Transpose after merging axes, then one Reshape to ``[N, M, Q*s...]``.
    ``rows`` is the channel layout of ``x`` when it is not ``plan.row_layout()``. With ``channels_last``
    the first step is a Transpose of ``x`` itself to ``[N, Q1, ..., Qn, C']`` (no Reshape before it):
    runtimes whose convolutions compute channels-last (OpenVINO's CPU plugin) make it a free layout
    change, and the one remaining Transpose then reads the Conv output in its native layout."""
    shapes = _Shapes(em, x)
    layout = conv_output_layout(plan, in_spatial, batch, rows)
    sizes = dict(layout)
    for a, ax in enumerate(plan.axes):
        sizes[f"S{a}"] = (ax.stride, ())
    current = x
    src = layout
    if channels_last:
        n = plan.rank
        current = em.var("channels_last")
        em.node("Transpose", "subpixel_channels_last", [x], [current], {"perm": [0] + list(range(2, 2 + n)) + [1]})
        src = layout[:1] + layout[-n:] + layout[1:-n]
    for i, labels in enumerate(stages):
        current = _permute(em, shapes, current, src, labels, f"shuffle{i + 1}" if len(stages) > 1 else "shuffle")
        src = [(label, sizes.get(label, (1, ()))) for label in labels]
    final = [sizes["N"], (plan.out_channels, ())]
    for a, ax in enumerate(plan.axes):
        final.append(_size_mul([sizes[f"Q{a}"], (ax.stride, ())]))
    em.node("Reshape", "subpixel_merge", [current, shapes.tensor("merge_shape", final)], [y])


def two_stage_labels(plan: SubPixelPlan) -> list:
    """The intermediate order of the two-stage shuffle: ``[N, S_lead, M, Q1, S1, ..., Q_lead, ...]``:
    every phase but the lead one moved into place by block moves (contiguous runs of at least ``Q_n``),
    so that the second stage is a single ``[S_lead, L(, B)] -> [L, S_lead(, B)]`` transpose."""
    lead = plan.lead_axis
    labels = ["N", f"S{lead}", "M"]
    for a in range(plan.rank):
        labels.append(f"Q{a}")
        if a != lead:
            labels.append(f"S{a}")
    return labels


def split_labels(plan: SubPixelPlan, two_stage: bool) -> list:
    """Label orders for phase-group Convs (:mod:`deconv2sub.plan.phases`): the phase of axis ``a`` is
    ``(G<a>, I<a>)`` (group, index within the group). Returns the output order, or with ``two_stage`` the
    intermediate order of :func:`two_stage_labels`."""
    lead = plan.lead_axis
    if not two_stage:
        labels = ["N", "M"]
        for a in range(plan.rank):
            labels += [f"Q{a}", f"G{a}", f"I{a}"]
        return labels
    labels = ["N", f"G{lead}", f"I{lead}", "M"]
    for a in range(plan.rank):
        labels.append(f"Q{a}")
        if a != lead:
            labels += [f"G{a}", f"I{a}"]
    return labels


# ---- transpose + row gather ---------------------------------------------------------------------------
# ONNX Runtime's CPU provider has two fast ways to move floats: its 2-D transpose (MLAS) and Gather,
# which copies whole rows with memcpy. The rest of the shuffle then costs one 2-D transpose and one
# Gather, and the Gather writes the final ``[N, M, out_1, ..., out_n]`` tensor itself (a Reshape that
# produces a graph output is a copy in ONNX Runtime; an intermediate one is free):
#
#   Conv, rows "LCR" [S_n, M, S_1..S_{n-1}]  ->  Transpose [S_n, L] -> [L, S_n]
#   = [N, M, S_1..S_{n-1}, Q_1..Q_{n-1}, (Q_n S_n)]  ->  Reshape [N, M, R, Q_n*S_n]   (free)
#   ->  Gather(axis 2, indices [out_1, ..., out_{n-1}])  =  [N, M, out_1, ..., out_{n-1}, Q_n*S_n]
#
# where the index of output position ``o_a = q_a * S_a + p_a`` on every axis but the last is the flat
# position of ``(p_1..p_{n-1}, q_1..q_{n-1})`` in R. The crop of those axes is folded into the indices
# (only the kept rows are gathered); the last axis keeps its Slice when it has a crop.


def gather_shuffle_ok(plan: SubPixelPlan, in_spatial: Optional[Sequence[Optional[int]]], split=None,
                      batch: Optional[int] = None) -> bool:
    """Whether :func:`emit_gather_shuffle` applies: 2-D or 3-D, the last axis strided (its phase leads the
    rows: "LCR" order, or phase-group Convs ``split`` whose last-axis groups lead), and every
    low-resolution size but the last one known (the indices are constants); phase-group Convs whose rows
    do not start with the channel also need the batch size (their Gather runs on axis 0)."""
    n = plan.rank
    if n < 2 or plan.lead_axis != n - 1 or in_spatial is None:
        return False
    if split is None and plan.order != "LCR":
        return False
    if not all(v is not None for v in in_spatial[:-1]):
        return False
    entries = int(np.prod([(i + a.growth) * a.stride - a.crop_begin - a.crop_end
                           for i, a in zip(in_spatial[: n - 1], plan.axes[: n - 1])]))
    if split is not None:  # the last axis' phase must lead the rows: then the Transpose is 2-D
        layout, stage, _, others = _gather_plan(plan, in_spatial, 1, split.rows, split)
        _, perm, _ = _merge_axes(layout, stage)
        if len(perm) > 2 or (others[0] != "M" and batch is None):
            return False
        if others[0] != "M":
            entries *= batch * plan.out_channels
    return entries <= MAX_GATHER_INDICES


MAX_GATHER_INDICES = 1 << 18  # int32 indices: at most 1 MiB of constants per node


def _phase_labels(plan: SubPixelPlan, split, axis: int) -> list:
    """The labels of axis ``axis``'s phase, major first, with sizes: ``[("S<a>", s)]`` for one Conv,
    ``[("G<a>", groups), ("I<a>", per group)]`` for phase-group Convs."""
    if split is None:
        return [(f"S{axis}", plan.axes[axis].stride)]
    n_groups, per_group = split.groups[axis]
    return [(f"G{axis}", n_groups), (f"I{axis}", per_group)]


def _gather_plan(plan: SubPixelPlan, in_spatial, batch, rows, split):
    """(source layout, stage labels, sizes, the labels between N and the last axis' block)."""
    n = plan.rank
    layout = conv_output_layout(plan, in_spatial, batch, rows)
    sizes = dict(layout)
    lead = [label for label, _ in _phase_labels(plan, split, n - 1)]
    for a in range(n):
        for label, size in _phase_labels(plan, split, a):
            sizes.setdefault(label, (size, ()))
    present = [label for label, _ in layout]
    others = [label for label in present if label not in ("N", f"Q{n - 1}") and label not in lead]
    stage = ["N"] + others + [f"Q{n - 1}"] + [label for label in lead if label in present]
    return layout, stage, sizes, others


def gather_indices(plan: SubPixelPlan, in_spatial: Sequence[int], rows=None, split=None,
                   batch: Optional[int] = None) -> tuple:
    """The Gather of :func:`emit_gather_shuffle`: ``(axis, indices)`` over the kept (cropped) output
    positions. When the channel leads the gathered rows: axis 2 of ``[N, M, R, inner]``, indices
    ``[out_1, ..., out_{n-1}]``; otherwise axis 0 of ``[N*R', inner]``, indices
    ``[N, M, out_1, ..., out_{n-1}]`` (the batch must be known)."""
    n = plan.rank
    _, _, sizes, others = _gather_plan(plan, in_spatial, 1, rows, split)
    axes = plan.axes[: n - 1]
    q = [i + a.growth for i, a in zip(in_spatial[: n - 1], axes)]
    ranges = [np.arange(a.crop_begin, qa * a.stride - a.crop_end) for a, qa in zip(axes, q)]
    leading_m = others[0] == "M"
    lead_ranges = [] if leading_m else [np.arange(batch), np.arange(plan.out_channels)]
    grids = np.meshgrid(*lead_ranges, *ranges, indexing="ij")
    values = {"M": 0 if leading_m else grids[1]}
    for a, grid in enumerate(grids[len(lead_ranges):]):
        st = plan.axes[a].stride
        values[f"Q{a}"] = grid // st
        phase = grid % st
        labels = _phase_labels(plan, split, a)
        if len(labels) == 1:
            values[labels[0][0]] = phase
        else:
            values[labels[0][0]], values[labels[1][0]] = np.divmod(phase, labels[1][1])
    index = np.zeros(grids[0].shape, dtype=np.int64) if leading_m else grids[0].astype(np.int64)
    for label in others:
        index = index * sizes[label][0] + np.asarray(values.get(label, 0), dtype=np.int64)
    if index.size and int(index.max()) < np.iinfo(np.int32).max:
        index = index.astype(np.int32)  # half the size; Gather takes int32 or int64 indices
    return (2 if leading_m else 0), index


def emit_gather_shuffle(
    em: Emitter,
    plan: SubPixelPlan,
    x: gs.Variable,
    y: gs.Variable,
    in_spatial: Sequence[Optional[int]],
    batch: Optional[int],
    rows: Optional[list] = None,
    split=None,
) -> None:
    """Shuffle ``x`` (Conv output; "LCR" rows, or the concatenation of phase-group Convs ``split`` with
    channel layout ``rows``) into ``y`` by one 2-D Transpose (the last axis' phase to the end) and one
    Gather (see above); the crop left to slice is :func:`gather_crop`."""
    n = plan.rank
    last = plan.axes[n - 1]
    shapes = _Shapes(em, x)
    layout, stage, sizes, others = _gather_plan(plan, in_spatial, batch, rows, split)
    moved = _permute(em, shapes, x, layout, stage, "shuffle1")
    axis, indices = gather_indices(plan, in_spatial, rows, split, batch)
    gathered = int(np.prod([sizes[label][0] for label in others]))
    inner = _size_mul([sizes[f"Q{n - 1}"], (last.stride, ())])
    if axis == 2:
        data_shape = [sizes["N"], (plan.out_channels, ()), (gathered // plan.out_channels, ()), inner]
    else:  # a Gather on axis 1 with 2-D indices breaks OpenVINO's CPU plugin when a Conv follows: axis 0
        data_shape = [(batch * gathered, ()), inner]
    data = em.var("rows")
    em.node("Reshape", "subpixel_rows", [moved, shapes.tensor("rows_shape", data_shape)], [data])
    em.node("Gather", "subpixel_gather", [data, em.const("gather_indices", indices)], [y], {"axis": axis})


def gather_crop(plan: SubPixelPlan) -> List[List[int]]:
    """The crop left after :func:`emit_gather_shuffle` (its indices drop the cropped rows of every axis
    but the last): ``[[0, 0], ..., [c0, e]]``."""
    last = plan.axes[-1]
    return [[0, 0]] * (plan.rank - 1) + [[last.crop_begin, last.crop_end]]


# ---- shuffles within a target's limits ---------------------------------------------------------------
# Targets bound what a shuffle may use: DepthToSpace in some modes and block sizes only, Reshape/Transpose
# up to some rank (ncnn's Permute and LiteRT's XNNPACK stop at 4-D). Two forms stay within such limits:
#
# * A cascade of DepthToSpace ops whose block sizes multiply to the stride: block ``b1`` then ``b2`` puts
#   phase ``p = p1*b2 + p2`` (the first block's phase is the major digit) on every axis. The Conv's
#   channels are then ordered so that the cascade lands every (channel, phase) in place: the order is
#   found by running the cascade on the row indices themselves (:func:`d2s_cascade_rows`), which is exact
#   whatever the modes, since DepthToSpace moves every low-resolution position alike.
# * A cascade of block swaps for 1-D, 3-D and unequal strides: from the Conv output (CRD rows)
#   ``[N, M, S0, ..., S_{n-1}, Q0, ..., Q_{n-1}]``, step ``a`` swaps the block of remaining phases
#   ``(S_a .. S_{n-1})`` with ``Q_a``, giving ``[N, M, Q0, S0, ..., Q_a, S_a, S_{a+1}.., Q_{a+1}..]``.
#   After merging the axes that stay adjacent, every step is one Transpose of at most four axes
#   ``[outer, phases, Q_a, inner]``, perm ``(0, 2, 1, 3)``; a final Reshape merges ``Q_a * S_a``.
#   With a symbolic batch the batch stays its own axis (Reshape ``0``) where the rank allows, so that a
#   1-D shuffle needs no run-time shape arithmetic even when the length is symbolic too.


def cascade_stages(plan: SubPixelPlan) -> List[List[str]]:
    """The label orders of the block-swap cascade (see above), one per strided axis."""
    n = plan.rank
    stages = []
    for a in range(n):
        if plan.axes[a].stride == 1:
            continue
        labels = ["N", "M"]
        for b in range(a + 1):
            labels += [f"Q{b}", f"S{b}"]
        labels += [f"S{b}" for b in range(a + 1, n)] + [f"Q{b}" for b in range(a + 1, n)]
        stages.append(labels)
    return stages


def cascade_plan(plan: SubPixelPlan, in_spatial, batch: Optional[int], max_rank: int) -> tuple:
    """Check the block-swap cascade of ``plan`` (CRD rows) against ``max_rank``: returns
    ``(steps, keep_batch, shape_ops)``: the stages, per stage whether the batch stays its own axis, and
    whether some Reshape needs run-time shape arithmetic (two or more unknown sizes). Raises ValueError
    when a stage needs a Transpose of more than ``max_rank`` axes."""
    layout = conv_output_layout(plan, in_spatial, batch)
    sizes = dict(layout)
    for a, ax in enumerate(plan.axes):
        sizes[f"S{a}"] = (ax.stride, ())
    batch_unknown = not _known(sizes["N"])
    src = layout
    steps, keep, shape_ops = cascade_stages(plan), [], False
    kept = True  # the Conv output has the batch as axis 0
    for labels in steps:
        merged, perm, _ = _merge_axes(src, labels)
        split = None
        if batch_unknown and kept:
            split = _merge_axes([(lbl, sz) for lbl, sz in src if lbl != "N"], [lb for lb in labels if lb != "N"])
        if split is not None and len(split[1]) + 1 <= max_rank:
            keep.append(True)
            shape_ops |= sum(not _known(sz) for sz in split[0]) > 1
        elif len(perm) <= max_rank:
            keep.append(False)
            kept = False
            shape_ops |= sum(not _known(sz) for sz in merged) > 1
        else:
            raise ValueError(f"its shuffle needs a Transpose of {len(perm)} axes (target allows {max_rank})")
        src = [(label, sizes.get(label, (1, ()))) for label in labels]
    final = [sizes["N"], (plan.out_channels, ())] + [
        _size_mul([sizes[f"Q{a}"], (ax.stride, ())]) for a, ax in enumerate(plan.axes)]
    unknown_final = sum(not _known(sz) for sz in (final[1:] if (batch_unknown and kept) else final))
    shape_ops |= unknown_final > 1
    return steps, keep, shape_ops


def _batch_reshape_shape(shapes: "_Shapes", suffix: str, rest: list) -> gs.Tensor:
    """A Reshape target ``[0, rest...]``: the batch copied from the input (its axis 0), ``rest`` sizes."""
    if sum(not _known(sz) for sz in rest) <= 1:
        return shapes.em.int64s(suffix, [0] + [f if _known((f, d)) else -1 for f, d in rest])
    batch_dim = (1, (0,))
    return shapes.tensor(suffix, [batch_dim] + list(rest))


def emit_cascade_shuffle(em: Emitter, plan: SubPixelPlan, x: gs.Variable, y: gs.Variable,
                         in_spatial, batch: Optional[int], max_rank: int) -> int:
    """Shuffle ``x`` (Conv output, CRD rows) into ``y`` by the block-swap cascade, every Transpose of at
    most ``max_rank`` axes; returns the number of Transposes."""
    steps, keep, _ = cascade_plan(plan, in_spatial, batch, max_rank)
    shapes = _Shapes(em, x)
    layout = conv_output_layout(plan, in_spatial, batch)
    sizes = dict(layout)
    for a, ax in enumerate(plan.axes):
        sizes[f"S{a}"] = (ax.stride, ())
    current, src, transposes = x, layout, 0
    for i, (labels, keep_batch) in enumerate(zip(steps, keep)):
        suffix = f"shuffle{i + 1}" if len(steps) > 1 else "shuffle"
        if keep_batch:
            merged, perm, _ = _merge_axes([(lb, sz) for lb, sz in src if lb != "N"],
                                          [lb for lb in labels if lb != "N"])
            if perm != list(range(len(perm))):
                r = em.var(f"{suffix}_in")
                em.node("Reshape", f"subpixel_{suffix}_reshape",
                        [current, _batch_reshape_shape(shapes, f"{suffix}_shape", merged)], [r])
                t = em.var(f"{suffix}_out")
                em.node("Transpose", f"subpixel_{suffix}", [r], [t], {"perm": [0] + [p + 1 for p in perm]})
                current, transposes = t, transposes + 1
        else:
            out = _permute(em, shapes, current, src, labels, suffix)
            transposes += out is not current
            current = out
        src = [(label, sizes.get(label, (1, ()))) for label in labels]
    rest = [(plan.out_channels, ())] + [_size_mul([sizes[f"Q{a}"], (ax.stride, ())])
                                        for a, ax in enumerate(plan.axes)]
    if keep and keep[-1] and not _known(sizes["N"]):
        target = _batch_reshape_shape(shapes, "merge_shape", rest)
    else:
        target = shapes.tensor("merge_shape", [sizes["N"]] + rest)
    em.node("Reshape", "subpixel_merge", [current, target], [y])
    return transposes


def emit_d2s_cascade(em: Emitter, x: gs.Variable, y: gs.Variable, blocks: Sequence[int],
                     modes: Sequence[str]) -> None:
    """DepthToSpace(``blocks[i]``, ``modes[i]``) in turn from ``x`` to ``y``."""
    current = x
    for i, (b, mode) in enumerate(zip(blocks, modes)):
        last = i == len(blocks) - 1
        out = y if last else em.var(f"d2s{i + 1}")
        attrs = {"blocksize": int(b)}
        if em.opset >= 11:
            attrs["mode"] = mode
        em.node("DepthToSpace", "subpixel_shuffle" if len(blocks) == 1 else f"subpixel_shuffle{i + 1}",
                [current], [out], attrs)
        current = out
