"""Emission of the periodic shuffle and the crop as ONNX nodes (onnx-graphsurgeon).

The Conv output is ``[N, M*P, Q1, ..., Qn]`` with channel ``m*P + phase`` ("CRD") or
``phase*M + m`` ("DCR"), ``phase`` row-major over ``(p1, ..., pn)``. The shuffle turns it into
``[N, M, Q1*s1, ..., Qn*sn]``:

* DepthToSpace when it can express it: 4-D tensors, one block size for both axes; mode CRD needs
  opset >= 11 (before that the only mode is DCR).
* Otherwise Reshape ``[N, M, s1..sn, Q1..Qn]`` (CRD) → Transpose to ``[N, M, Q1, s1, ..., Qn, sn]``
  → Reshape ``[N, M, Q1*s1, ...]``. Shapes are constants where the spatial sizes are known (``0``
  copies the batch, one ``-1`` covers one unknown size); with two or more unknown sizes they are
  computed at run time from ``Shape`` so that no size the original left symbolic gets baked in.

The crop is a Slice on the spatial axes: begin ``c0``, end ``-e`` (or "to the end"), which holds for
every input size since ``e`` does not depend on it. Before opset 10 Slice takes attributes. The one
exception, ``output_shape`` with a symbolic input size, gets its begin/end computed from the input's
run-time shape (:func:`emit_runtime_crop`, opset >= 10).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import onnx_graphsurgeon as gs

from ..plan.layout import (
    cascade_plan,
    conv_output_layout,
    gather_indices,
    gather_plan,
    known,
    merge_axes,
    size_mul,
)
from ..plan.subpixel import SubPixelPlan

INT64_MAX = np.iinfo(np.int64).max


class Emitter:
    """Creates uniquely named nodes and constants for one rewritten ConvTranspose."""

    def __init__(self, base: str, unique: Callable[[str], str], opset: int):
        """Collect nodes named after ``base``, made unique by ``unique``, for ``opset``."""
        self.base = base
        self.unique = unique
        self.opset = opset
        self.nodes: List[gs.Node] = []

    def const(self, suffix: str, values) -> gs.Constant:
        """A new constant named after ``suffix`` holding ``values``."""
        return gs.Constant(self.unique(f"{self.base}_{suffix}"), np.asarray(values))

    def var(self, suffix: str, dtype=None) -> gs.Variable:
        """A new variable named after ``suffix``."""
        return gs.Variable(self.unique(f"{self.base}_{suffix}"), dtype=dtype)

    def node(self, op: str, suffix: str, inputs, outputs, attrs=None) -> gs.Node:
        """A new node (also appended to ``self.nodes``), named after ``suffix``."""
        n = gs.Node(
            op=op,
            name=self.unique(f"{self.base}/{suffix}"),
            attrs=attrs or {},
            inputs=inputs,
            outputs=outputs,
        )
        self.nodes.append(n)
        return n

    def int64s(self, suffix: str, values) -> gs.Constant:
        """A new int64 constant named after ``suffix`` holding ``values``."""
        return self.const(suffix, np.asarray(values, dtype=np.int64))


def shuffle_kind(plan: SubPixelPlan, opset: int, prefer: str = "auto") -> str:
    """Which shuffle the plan gets.

    One of "none", "DepthToSpace(CRD)", "DepthToSpace(DCR)" or "Reshape/Transpose".
    """
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
    """Shuffle ``x`` (Conv output) into ``y``.

    ``in_spatial`` are the ConvTranspose input sizes (None = unknown).
    """
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
        shapes = _Shapes(em, x)
        dims = [(v, ()) if v is not None else (1, (2 + a,)) for a, v in enumerate(q)]
        scaled = [(v * st, ()) if v is not None else (st, (2 + a,))
                  for a, (v, st) in enumerate(zip(q, s))]
        head = [(1, (0,)), (m, ())]
        shape1_t = shapes.tensor("shuffle_shape1", head + [(st, ()) for st in s] + dims)
        shape2_t = shapes.tensor("shuffle_shape2", head + scaled)
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
            [
                x,
                em.int64s(suffix + "_starts", starts),
                em.int64s(suffix + "_ends", ends),
                em.int64s(suffix + "_axes", axes),
            ],
            [y],
        )
    else:
        em.node(
            "Slice",
            suffix,
            [x],
            [y],
            {"starts": list(starts), "ends": list(ends), "axes": list(axes)},
        )


def emit_crop(
    em: Emitter,
    plan: SubPixelPlan,
    x: gs.Variable,
    y: gs.Variable,
    crops: Optional[Sequence[Sequence[int]]] = None,
) -> List[List[int]]:
    """Slice the shuffled tensor ``x`` into ``y``; return the per-axis [begin, end] crop.

    ``crops``: instead of the plan's, when part of it was done elsewhere.
    """
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


def emit_runtime_crop(
    em: Emitter,
    plan: SubPixelPlan,
    x_in: gs.Tensor,
    x: gs.Variable,
    y: gs.Variable,
    crops: Optional[Sequence[Sequence[int]]] = None,
) -> list:
    """Slice ``x`` into ``y`` when some axes are cut at run time; return the per-axis crop.

    Those axes are ``plan.runtime_axes``: ``output_shape`` with a symbolic input size. Their begin
    is the ConvTranspose's begin pad, computed from the run-time size ``I`` of ``x_in`` (the
    ConvTranspose input): ``t = max(0, s*I + offset)``, begin ``t - t // 2`` (``t // 2`` for
    SAME_UPPER); their end is ``begin + output_shape``. The other axes keep their constant crop
    (``crops``, default the plan's); one Slice does all. Needs opset >= 10 (Slice inputs). The
    returned crop (for the report) is ``["run-time", out]`` on the run-time axes.
    """
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
        ends = op(
            "Concat", "crop_ends_all", [em.int64s("crop_ends_fixed", fixed_ends), end], {"axis": 0}
        )
    crop_axes = em.int64s("crop_axes", [2 + a for a in fixed + dyn])
    em.node("Slice", "subpixel_crop", [x, starts, ends, crop_axes], [y])
    return [
        ["run-time", plan.axes[a].runtime_out] if a in dyn else list(crops[a])
        for a in range(plan.rank)
    ]


class _Shapes:
    """Emits shape tensors for Reshape, from the Conv output's run-time shape only when needed.

    A size computed at run time is built the way exporters (PyTorch) build them: ``Gather`` of one
    dim of ``Shape`` with a scalar index, scalar ``Mul``, ``Unsqueeze`` to 1-D, ``Concat``. TVM's
    Relax ONNX importer folds exactly that into a symbolic shape; a ``Slice`` of ``Shape`` followed
    by ``Mul`` it refuses ("cannot handle ShapeExpr inputs", apache-tvm 0.27;
    tests/toolchain_repros/tvm/shape_arithmetic.onnx), and a 1-D ``Gather`` gives a tensor that its
    ``Reshape`` refuses ("requires the input new shape to be Shape").
    """

    def __init__(self, em: Emitter, source: gs.Variable):
        self.em = em
        self.source = source
        self._shape = None
        self._dims: dict = {}

    def _dim(self, i: int) -> gs.Variable:
        """Dim ``i`` of the source's run-time shape, an int64 scalar."""
        if i not in self._dims:
            if self._shape is None:
                self._shape = self.em.var("shape", np.int64)
                self.em.node("Shape", "subpixel_shape", [self.source], [self._shape])
            v = self.em.var(f"shape_dim{i}", np.int64)
            self.em.node(
                "Gather",
                f"subpixel_shape_dim{i}",
                [self._shape, self.em.int64s(f"shape_dim{i}_index", i)],
                [v],
                {"axis": 0},
            )
            self._dims[i] = v
        return self._dims[i]

    def _to_1d(self, suffix: str, scalar: gs.Variable) -> gs.Variable:
        out = self.em.var(suffix, np.int64)
        if self.em.opset >= 13:
            self.em.node(
                "Unsqueeze",
                f"subpixel_{suffix}",
                [scalar, self.em.int64s(f"{suffix}_axes", [0])],
                [out],
            )
        else:
            self.em.node("Unsqueeze", f"subpixel_{suffix}", [scalar], [out], {"axes": [0]})
        return out

    def tensor(self, suffix: str, sizes) -> gs.Tensor:
        unknown = [s for s in sizes if not known(s)]
        if len(unknown) <= 1:
            return self.em.int64s(suffix, [f if known((f, d)) else -1 for f, d in sizes])
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
                self.em.node(
                    "Mul",
                    f"subpixel_{suffix}_{i}_scale",
                    [value, self.em.int64s(f"{suffix}_{i}_f", factor)],
                    [prod],
                )
                value = prod
            parts.append(self._to_1d(f"{suffix}_{i}_1d", value))
        out = self.em.var(suffix, np.int64)
        self.em.node("Concat", f"subpixel_{suffix}", parts, [out], {"axis": 0})
        return out


def _permute(
    em: Emitter, shapes: _Shapes, x: gs.Variable, src: list, dst_labels: list, suffix: str
) -> gs.Variable:
    """Transpose ``x`` (logical axes ``src``) into the label order ``dst_labels``; return it.

    The result is ``x`` itself when the permutation only merges/splits axes.
    """
    merged, perm, _ = merge_axes(src, dst_labels)
    if perm == list(range(len(perm))):
        return x
    r = em.var(f"{suffix}_in")
    em.node(
        "Reshape", f"subpixel_{suffix}_reshape", [x, shapes.tensor(f"{suffix}_shape", merged)], [r]
    )
    t = em.var(f"{suffix}_out")
    em.node("Transpose", f"subpixel_{suffix}", [r], [t], {"perm": perm})
    return t


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
    """Shuffle ``x`` (the Conv output) into ``y`` through the label orders ``stages``.

    The last stage must be :func:`output_labels`; each is a Transpose after merging axes, then one
    Reshape to ``[N, M, Q*s...]``. ``rows`` is the channel layout of ``x`` when it is not
    ``plan.row_layout()``. With ``channels_last`` the first step is a Transpose of ``x`` itself to
    ``[N, Q1, ..., Qn, C']`` (no Reshape before it): runtimes whose convolutions compute
    channels-last (OpenVINO's CPU plugin) make it a free layout change, and the one remaining
    Transpose then reads the Conv output in its native layout.
    """
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
        em.node(
            "Transpose",
            "subpixel_channels_last",
            [x],
            [current],
            {"perm": [0] + list(range(2, 2 + n)) + [1]},
        )
        src = layout[:1] + layout[-n:] + layout[1:-n]
    for i, labels in enumerate(stages):
        current = _permute(
            em, shapes, current, src, labels, f"shuffle{i + 1}" if len(stages) > 1 else "shuffle"
        )
        src = [(label, sizes.get(label, (1, ()))) for label in labels]
    final = [sizes["N"], (plan.out_channels, ())]
    for a, ax in enumerate(plan.axes):
        final.append(size_mul([sizes[f"Q{a}"], (ax.stride, ())]))
    em.node("Reshape", "subpixel_merge", [current, shapes.tensor("merge_shape", final)], [y])


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
    """Shuffle ``x`` into ``y`` by one 2-D Transpose and one Gather (see above).

    ``x`` is the Conv output ("LCR" rows), or the concatenation of phase-group Convs ``split`` with
    channel layout ``rows``; the Transpose moves the last axis' phase to the end. The crop left to
    slice is :func:`gather_crop`.
    """
    n = plan.rank
    last = plan.axes[n - 1]
    shapes = _Shapes(em, x)
    layout, stage, sizes, others = gather_plan(plan, in_spatial, batch, rows, split)
    moved = _permute(em, shapes, x, layout, stage, "shuffle1")
    axis, indices = gather_indices(plan, in_spatial, rows, split, batch)
    gathered = int(np.prod([sizes[label][0] for label in others]))
    inner = size_mul([sizes[f"Q{n - 1}"], (last.stride, ())])
    if axis == 2:
        data_shape = [
            sizes["N"],
            (plan.out_channels, ()),
            (gathered // plan.out_channels, ()),
            inner,
        ]
    # a Gather on axis 1 with 2-D indices breaks OpenVINO's CPU plugin when a Conv follows: axis 0
    else:
        data_shape = [(batch * gathered, ()), inner]
    data = em.var("rows")
    em.node("Reshape", "subpixel_rows", [moved, shapes.tensor("rows_shape", data_shape)], [data])
    em.node(
        "Gather",
        "subpixel_gather",
        [data, em.const("gather_indices", indices)],
        [y],
        {"axis": axis},
    )


def _batch_reshape_shape(shapes: "_Shapes", suffix: str, rest: list) -> gs.Tensor:
    """A Reshape target ``[0, rest...]``: the batch copied from the input (axis 0), then rest."""
    if sum(not known(sz) for sz in rest) <= 1:
        return shapes.em.int64s(suffix, [0] + [f if known((f, d)) else -1 for f, d in rest])
    batch_dim = (1, (0,))
    return shapes.tensor(suffix, [batch_dim] + list(rest))


def emit_cascade_shuffle(
    em: Emitter,
    plan: SubPixelPlan,
    x: gs.Variable,
    y: gs.Variable,
    in_spatial,
    batch: Optional[int],
    max_rank: int,
) -> int:
    """Shuffle ``x`` into ``y`` by the block-swap cascade; return the number of Transposes.

    ``x`` is the Conv output (CRD rows); every Transpose has at most ``max_rank`` axes.
    """
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
            merged, perm, _ = merge_axes(
                [(lb, sz) for lb, sz in src if lb != "N"], [lb for lb in labels if lb != "N"]
            )
            if perm != list(range(len(perm))):
                r = em.var(f"{suffix}_in")
                em.node(
                    "Reshape",
                    f"subpixel_{suffix}_reshape",
                    [current, _batch_reshape_shape(shapes, f"{suffix}_shape", merged)],
                    [r],
                )
                t = em.var(f"{suffix}_out")
                em.node(
                    "Transpose",
                    f"subpixel_{suffix}",
                    [r],
                    [t],
                    {"perm": [0] + [p + 1 for p in perm]},
                )
                current, transposes = t, transposes + 1
        else:
            out = _permute(em, shapes, current, src, labels, suffix)
            transposes += out is not current
            current = out
        src = [(label, sizes.get(label, (1, ()))) for label in labels]
    rest = [(plan.out_channels, ())] + [
        size_mul([sizes[f"Q{a}"], (ax.stride, ())]) for a, ax in enumerate(plan.axes)
    ]
    if keep and keep[-1]:
        target = _batch_reshape_shape(shapes, "merge_shape", rest)
    else:
        target = shapes.tensor("merge_shape", [sizes["N"]] + rest)
    em.node("Reshape", "subpixel_merge", [current, target], [y])
    return transposes


def emit_d2s_cascade(
    em: Emitter, x: gs.Variable, y: gs.Variable, blocks: Sequence[int], modes: Sequence[str]
) -> None:
    """DepthToSpace(``blocks[i]``, ``modes[i]``) in turn from ``x`` to ``y``."""
    current = x
    for i, (b, mode) in enumerate(zip(blocks, modes)):
        last = i == len(blocks) - 1
        out = y if last else em.var(f"d2s{i + 1}")
        attrs = {"blocksize": int(b)}
        if em.opset >= 11:
            attrs["mode"] = mode
        em.node(
            "DepthToSpace",
            "subpixel_shuffle" if len(blocks) == 1 else f"subpixel_shuffle{i + 1}",
            [current],
            [out],
            attrs,
        )
        current = out


def emit_reshape_targets(em: Emitter, source: gs.Variable, targets: Sequence[tuple]) -> list:
    """Shape tensors for Reshapes of ``source``, one per ``(suffix, batch, rest)`` of ``targets``.

    Each is ``[batch, rest...]`` with sizes as :mod:`deconv2sub.plan.layout` writes them
    (``(factor, dims of source)``): constants where known (one ``-1`` for one unknown size), else
    computed from ``source``'s run-time shape (one Shape node for all). An unknown ``batch`` is
    ``0`` (copied from the Reshape's input, whose axis 0 is the batch).
    """
    shapes = _Shapes(em, source)
    return [
        shapes.tensor(suffix, [batch] + list(rest))
        if known(batch)
        else _batch_reshape_shape(shapes, suffix, rest)
        for suffix, batch, rest in targets
    ]
