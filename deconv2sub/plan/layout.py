"""The shuffles' layout arithmetic (numpy only; :mod:`deconv2sub.rewrite.shuffle` writes the nodes).

Labelled axes and their sizes, the label orders of each shuffle, and the plans of the row Gather and
of the block-swap cascade.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from .subpixel import SubPixelPlan

__all__ = [
    "MAX_GATHER_INDICES",
    "Size",
    "cascade_plan",
    "cascade_stages",
    "conv_output_layout",
    "gather_crop",
    "gather_indices",
    "gather_plan",
    "gather_shuffle_ok",
    "known",
    "merge_axes",
    "output_labels",
    "phase_labels",
    "size_mul",
    "split_labels",
    "two_stage_labels",
]


# ---- shuffles as labelled permutations ----------------------------------------------------------
# A tensor is described by its logical axes, outermost first, each a label and a size. A size is
# ``(factor, dims)``: ``factor`` times the product of the Conv output's dims ``dims`` (indices into
# ``[N, C', Q1, ..., Qn]``), so unknown (symbolic) sizes stay symbolic. A shuffle is then a
# permutation of labels, emitted as Reshape → Transpose → ... → Reshape. Axes of size 1 are dropped
# and runs of axes that stay adjacent are merged first, so every Transpose has the smallest
# possible rank: runtimes have fast paths for low-rank transposes (ONNX Runtime's 2-D float
# transpose is several times faster than its generic n-D one).


Size = tuple  # (factor: int, dims: tuple of Conv output dim indices)


def size_mul(sizes) -> Size:
    """The product of ``sizes``."""
    factor, dims = 1, ()
    for f, d in sizes:
        factor *= f
        dims += tuple(d)
    return factor, tuple(sorted(dims))


def known(size: Size) -> bool:
    """Whether ``size`` is a constant (depends on no symbolic dim)."""
    return not size[1]


def merge_axes(src: list, dst_labels: list) -> tuple:
    """Drop size-1 axes, merge runs that stay adjacent.

    Returns (merged src sizes, perm, merged dst sizes).
    """
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
    merged = [size_mul(s for _, s in g) for g in groups]
    return merged, order, [merged[g] for g in order]


def conv_output_layout(
    plan: SubPixelPlan,
    in_spatial: Optional[Sequence[Optional[int]]],
    batch: Optional[int],
    rows: Optional[list] = None,
) -> list:
    """Logical axes of the Conv output ``[N, rows..., Q1, ..., Qn]``.

    ``rows``: the channel layout, default ``plan.row_layout()``.
    """
    n = plan.rank
    q = (
        [None] * n
        if in_spatial is None
        else [None if i is None else i + a.growth for i, a in zip(in_spatial, plan.axes)]
    )
    layout = [("N", (batch, ()) if batch else (1, (0,)))]
    layout += [(name, (size, ())) for name, size in (plan.row_layout() if rows is None else rows)]
    layout += [(f"Q{a}", (v, ()) if v is not None else (1, (2 + a,))) for a, v in enumerate(q)]
    return layout


def output_labels(plan: SubPixelPlan) -> list:
    """The label order of the output: ``[N, M, Q0, S0, ..., Qn, Sn]``."""
    labels = ["N", "M"]
    for a, ax in enumerate(plan.axes):
        labels += [f"Q{a}", f"S{a}"]
    return labels


def two_stage_labels(plan: SubPixelPlan) -> list:
    """The intermediate order of the two-stage shuffle.

    ``[N, S_lead, M, Q1, S1, ..., Q_lead, ...]``: every phase but the lead one moved into place by
    block moves (contiguous runs of at least ``Q_n``), so that the second stage is a single
    ``[S_lead, L(, B)] -> [L, S_lead(, B)]`` transpose.
    """
    lead = plan.lead_axis
    labels = ["N", f"S{lead}", "M"]
    for a in range(plan.rank):
        labels.append(f"Q{a}")
        if a != lead:
            labels.append(f"S{a}")
    return labels


def split_labels(plan: SubPixelPlan, two_stage: bool) -> list:
    """Label orders for phase-group Convs (:mod:`deconv2sub.plan.phases`).

    The phase of axis ``a`` is ``(G<a>, I<a>)`` (group, index within the group). Returns the output
    order, or with ``two_stage`` the intermediate order of :func:`two_stage_labels`.
    """
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


# ---- transpose + row gather ---------------------------------------------------------------------
# ONNX Runtime's CPU provider has two fast ways to move floats: its 2-D transpose (MLAS) and Gather,
# which copies whole rows with memcpy. The rest of the shuffle then costs one 2-D transpose and one
# Gather, and the Gather writes the final ``[N, M, out_1, ..., out_n]`` tensor itself (a Reshape
# that produces a graph output is a copy in ONNX Runtime; an intermediate one is free):
#
#   Conv, rows "LCR" [S_n, M, S_1..S_{n-1}]  ->  Transpose [S_n, L] -> [L, S_n]
#   = [N, M, S_1..S_{n-1}, Q_1..Q_{n-1}, (Q_n S_n)]  ->  Reshape [N, M, R, Q_n*S_n]   (free)
#   ->  Gather(axis 2, indices [out_1, ..., out_{n-1}])  =  [N, M, out_1, ..., out_{n-1}, Q_n*S_n]
#
# where the index of output position ``o_a = q_a * S_a + p_a`` on every axis but the last is the
# flat position of ``(p_1..p_{n-1}, q_1..q_{n-1})`` in R. The crop of those axes is folded into the
# indices (only the kept rows are gathered); the last axis keeps its Slice when it has a crop.


def gather_shuffle_ok(
    plan: SubPixelPlan,
    in_spatial: Optional[Sequence[Optional[int]]],
    split=None,
    batch: Optional[int] = None,
) -> bool:
    """Whether the row Gather shuffle applies.

    2-D or 3-D, the last axis strided (its phase leads the rows: "LCR" order, or phase-group Convs
    ``split`` whose last-axis groups lead), and every low-resolution size but the last one known
    (the indices are constants); phase-group Convs whose rows do not start with the channel also
    need the batch size (their Gather runs on axis 0).
    """
    n = plan.rank
    if n < 2 or plan.lead_axis != n - 1 or in_spatial is None:
        return False
    if split is None and plan.order != "LCR":
        return False
    if not all(v is not None for v in in_spatial[:-1]):
        return False
    entries = int(
        np.prod(
            [
                (i + a.growth) * a.stride - a.crop_begin - a.crop_end
                for i, a in zip(in_spatial[: n - 1], plan.axes[: n - 1])
            ]
        )
    )
    if split is not None:  # the last axis' phase must lead the rows: then the Transpose is 2-D
        layout, stage, _, others = gather_plan(plan, in_spatial, 1, split.rows, split)
        _, perm, _ = merge_axes(layout, stage)
        if len(perm) > 2 or (others[0] != "M" and batch is None):
            return False
        if others[0] != "M":
            entries *= batch * plan.out_channels
    return entries <= MAX_GATHER_INDICES


MAX_GATHER_INDICES = 1 << 18  # int32 indices: at most 1 MiB of constants per node


def phase_labels(plan: SubPixelPlan, split, axis: int) -> list:
    """The labels of axis ``axis``'s phase, major first, with sizes.

    ``[("S<a>", s)]`` for one Conv,
    ``[("G<a>", groups), ("I<a>", per group)]`` for phase-group Convs.
    """
    if split is None:
        return [(f"S{axis}", plan.axes[axis].stride)]
    n_groups, per_group = split.groups[axis]
    return [(f"G{axis}", n_groups), (f"I{axis}", per_group)]


def gather_plan(plan: SubPixelPlan, in_spatial, batch, rows, split):
    """(source layout, stage labels, sizes, the labels between N and the last axis' block)."""
    n = plan.rank
    layout = conv_output_layout(plan, in_spatial, batch, rows)
    sizes = dict(layout)
    lead = [label for label, _ in phase_labels(plan, split, n - 1)]
    for a in range(n):
        for label, size in phase_labels(plan, split, a):
            sizes.setdefault(label, (size, ()))
    present = [label for label, _ in layout]
    others = [label for label in present if label not in ("N", f"Q{n - 1}") and label not in lead]
    stage = ["N"] + others + [f"Q{n - 1}"] + [label for label in lead if label in present]
    return layout, stage, sizes, others


def gather_indices(
    plan: SubPixelPlan,
    in_spatial: Sequence[int],
    rows=None,
    split=None,
    batch: Optional[int] = None,
) -> tuple:
    """The row Gather: ``(axis, indices)`` over the kept (cropped) output positions.

    When the channel leads the gathered rows: axis 2 of ``[N, M, R, inner]``, indices
    ``[out_1, ..., out_{n-1}]``; otherwise axis 0 of ``[N*R', inner]``, indices
    ``[N, M, out_1, ..., out_{n-1}]`` (the batch must be known).
    """
    n = plan.rank
    _, _, sizes, others = gather_plan(plan, in_spatial, 1, rows, split)
    axes = plan.axes[: n - 1]
    q = [i + a.growth for i, a in zip(in_spatial[: n - 1], axes)]
    ranges = [np.arange(a.crop_begin, qa * a.stride - a.crop_end) for a, qa in zip(axes, q)]
    leading_m = others[0] == "M"
    lead_ranges = [] if leading_m else [np.arange(batch), np.arange(plan.out_channels)]
    grids = np.meshgrid(*lead_ranges, *ranges, indexing="ij")
    values = {"M": 0 if leading_m else grids[1]}
    for a, grid in enumerate(grids[len(lead_ranges) :]):
        st = plan.axes[a].stride
        values[f"Q{a}"] = grid // st
        phase = grid % st
        labels = phase_labels(plan, split, a)
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


def gather_crop(plan: SubPixelPlan) -> List[List[int]]:
    """The crop left after the row Gather: ``[[0, 0], ..., [c0, e]]``.

    Its indices drop the cropped rows of every axis but the last.
    """
    last = plan.axes[-1]
    return [[0, 0]] * (plan.rank - 1) + [[last.crop_begin, last.crop_end]]


# ---- shuffles within a target's limits ----------------------------------------------------------
# Targets bound what a shuffle may use: DepthToSpace in some modes and block sizes only,
# Reshape/Transpose up to some rank (ncnn's Permute and LiteRT's XNNPACK stop at 4-D). Two forms
# stay within such limits:
#
# * A cascade of DepthToSpace ops whose block sizes multiply to the stride: block ``b1`` then
#   ``b2`` puts phase ``p = p1*b2 + p2`` (the first block's phase is the major digit) on every
#   axis. The Conv's channels are then ordered so that the cascade lands every (channel, phase) in
#   place: the order is found by running the cascade on the row indices themselves
#   (:func:`d2s_cascade_rows`), which is exact whatever the modes, since DepthToSpace moves every
#   low-resolution position alike.
# * A cascade of block swaps for 1-D, 3-D and unequal strides: from the Conv output (CRD rows)
#   ``[N, M, S0, ..., S_{n-1}, Q0, ..., Q_{n-1}]``, step ``a`` swaps the block of remaining phases
#   ``(S_a .. S_{n-1})`` with ``Q_a``, giving ``[N, M, Q0, S0, ..., Q_a, S_a, S_{a+1}..,
#   Q_{a+1}..]``. After merging the axes that stay adjacent, every step is one Transpose of at most
#   four axes ``[outer, phases, Q_a, inner]``, perm ``(0, 2, 1, 3)``; a final Reshape merges ``Q_a
#   * S_a``. With a symbolic batch the batch stays its own axis (Reshape ``0``) where the rank
#     allows, so that a
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
    """Check the block-swap cascade of ``plan`` (CRD rows) against ``max_rank``.

    Returns ``(steps, keep_batch, shape_ops)``: the stages, per stage whether the batch stays its
    own axis, and whether some Reshape needs run-time shape arithmetic (two or more unknown sizes).
    Raises ValueError when a stage needs a Transpose of more than ``max_rank`` axes.
    """
    layout = conv_output_layout(plan, in_spatial, batch)
    sizes = dict(layout)
    for a, ax in enumerate(plan.axes):
        sizes[f"S{a}"] = (ax.stride, ())
    batch_unknown = not known(sizes["N"])
    src = layout
    steps, keep, shape_ops = cascade_stages(plan), [], False
    kept = True  # the Conv output has the batch as axis 0
    for labels in steps:
        merged, perm, _ = merge_axes(src, labels)
        split = None
        # The batch stays axis 0 wherever the rank allows, also when it is known: a symbolic batch
        # then needs no shape arithmetic, and runtimes without a batch axis (ncnn) read the leading
        # 1 as the batch ([1, M, s, L] is their 3-D tensor; [M, s, L] would not be).
        if kept:
            split = merge_axes(
                [(lbl, sz) for lbl, sz in src if lbl != "N"], [lb for lb in labels if lb != "N"]
            )
        if split is not None and len(split[1]) + 1 <= max_rank:
            keep.append(True)
            shape_ops |= sum(not known(sz) for sz in split[0]) > 1
        elif len(perm) <= max_rank:
            keep.append(False)
            kept = False
            shape_ops |= sum(not known(sz) for sz in merged) > 1
        else:
            raise ValueError(
                f"its shuffle needs a Transpose of {len(perm)} axes (target allows {max_rank})"
            )
        src = [(label, sizes.get(label, (1, ()))) for label in labels]
    final = [sizes["N"], (plan.out_channels, ())] + [
        size_mul([sizes[f"Q{a}"], (ax.stride, ())]) for a, ax in enumerate(plan.axes)
    ]
    unknown_final = sum(not known(sz) for sz in (final[1:] if (batch_unknown and kept) else final))
    shape_ops |= unknown_final > 1
    return steps, keep, shape_ops
