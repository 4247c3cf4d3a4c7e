"""Per-phase emission: one Conv per group of output phases, each with only the taps that reach it.

When the kernel is not a multiple of the stride, the shared sub-pixel kernel is padded with zero
taps (ENet's k3 s2: 16 stored taps per channel pair for 9 real ones); when the ConvTranspose crops
the start of its output (pads), the shared kernel either keeps a Slice after the shuffle or,
folded, grows by a tap (DCGAN's k4 s2 p1: 3x3 instead of 2x2). Phase Convs avoid both: on every
axis the output phases are grouped by the span of kernel positions they use (after folding the
crop, see
:func:`deconv2sub.plan.subpixel.make_plan` with ``fold_crop="always"``); the phases of a group
share one Conv whose kernel is trimmed to that span and whose pads shrink by the same amount, so
every group keeps the same output size and no crop is left. A group is a run of consecutive phases;
when the runs of an axis differ in length the axis falls back to one group per phase.

ENet's k3 s2 p1 op1: 4 Convs (2x2, 2x1, 1x2, 1x1 taps, 9 in all); DCGAN's k4 s2 p1: 4 Convs of 2x2
and no Slice; FCN's k16 s8 p4: 2 groups of 4 phases per axis, 4 Convs of 2x2 and no Slice. The
group outputs are concatenated and shuffled by the same two-stage transpose as a single Conv (see
:func:`deconv2sub.plan.layout.two_stage_labels`); the channel layout of the concatenation is
``[G_lead, G_other..., M, I_1, ..., I_n]`` (group index per axis, output channel, index within the
group).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from .subpixel import SubPixelPlan

__all__ = ["PhaseConv", "PhaseSplit", "macs_ratio", "phase_split", "split_of"]


@dataclass
class PhaseConv:
    """One Conv of a phase group: its taps, bias, pads and dilations."""

    group: tuple  # (g_1, ..., g_n)
    weight: np.ndarray  # [M * prod(G), C/g, l...], rows (m, i_1, ..., i_n)
    bias: Optional[np.ndarray]
    pads: list  # [b1..bn, e1..en]
    dilations: list


@dataclass
class PhaseSplit:
    """The phase-group Convs of a plan, in concatenation order, and their channel layout."""

    convs: List[PhaseConv]  # in concatenation order
    groups: list  # per axis (number of groups n_a, phases per group G_a); n_a * G_a = s_a
    rows: list = field(default_factory=list)  # channel layout of the concatenation (see module doc)

    def conv_rows(self, m: int) -> list:
        """Channel layout of one group Conv: ``[M, I_1, ..., I_n]``."""
        return [("M", m)] + [(f"I{a}", g) for a, (_, g) in enumerate(self.groups) if g > 1]


def _axis_groups(table: np.ndarray, pad_b: int, pad_e: int, dil: int):
    """The kernel spans of an axis' phases and their grouping.

    Per phase the trimmed [lo, hi] span of kernel positions (None if a phase has no tap), and the
    grouping (n, G) of the axis.
    """
    length = table.shape[1]
    spans = []
    for row in table:
        used = np.nonzero(row >= 0)[0]
        if used.size == 0:
            return None, None
        lo = min(int(used[0]), pad_b // dil)  # a pad cannot go negative: keep leading zero taps
        hi = max(int(used[-1]), length - 1 - pad_e // dil)
        spans.append((lo, hi))
    runs = [1]
    for a, b in zip(spans, spans[1:]):
        if a == b:
            runs[-1] += 1
        else:
            runs.append(1)
    size = runs[0] if len(set(runs)) == 1 else 1
    return spans, (len(spans) // size, size)


def _group_order(groups: list, lead: Optional[int]) -> List[tuple]:
    """Group tuples in concatenation order: the lead axis outermost, then the others in order."""
    n = len(groups)
    axes = ([lead] if lead is not None else []) + [a for a in range(n) if a != lead]
    order = []
    for combo in itertools.product(*[range(groups[a][0]) for a in axes]):
        g = [0] * n
        for a, v in zip(axes, combo):
            g[a] = v
        order.append(tuple(g))
    return order


def phase_split(plan: SubPixelPlan) -> Optional[PhaseSplit]:
    """The group Convs of a CRD plan, in concatenation order; None if some phase has no tap."""
    if plan.order != "CRD" or not plan.tap_tables:
        raise ValueError("per-phase convs need a CRD plan with its tap tables")
    spans, groups = [], []
    for ax, table in zip(plan.axes, plan.tap_tables):
        s, g = _axis_groups(table, ax.conv_pad_begin, ax.conv_pad_end, ax.conv_dilation)
        if s is None:
            return None
        spans.append(s)
        groups.append(g)
    m, P = plan.out_channels, plan.phases
    strides = plan.strides
    lead = plan.lead_axis
    convs = []
    for g in _group_order(groups, lead):
        within = list(itertools.product(*[range(groups[a][1]) for a in range(plan.rank)]))
        phases = [tuple(g[a] * groups[a][1] + i[a] for a in range(plan.rank)) for i in within]
        index = [int(np.ravel_multi_index(p, strides)) for p in phases]
        rows = (np.arange(m)[:, None] * P + np.asarray(index)[None, :]).reshape(
            -1
        )  # (m, i...) order
        weight = plan.weight[rows]
        slices = [slice(None), slice(None)]
        pads_b, pads_e = [], []
        for a, (ax, table) in enumerate(zip(plan.axes, plan.tap_tables)):
            lo, hi = spans[a][g[a] * groups[a][1]]
            dil = ax.conv_dilation
            pads_b.append(ax.conv_pad_begin - lo * dil)
            pads_e.append(ax.conv_pad_end - (table.shape[1] - 1 - hi) * dil)
            slices.append(slice(lo, hi + 1))
        bias = None if plan.bias is None else plan.bias[rows]
        convs.append(
            PhaseConv(
                g,
                np.ascontiguousarray(weight[tuple(slices)]),
                bias,
                pads_b + pads_e,
                list(plan.conv_dilations),
            )
        )
    rows_layout = [] if lead is None or groups[lead][0] == 1 else [(f"G{lead}", groups[lead][0])]
    rows_layout += [(f"G{a}", n) for a, (n, _) in enumerate(groups) if a != lead and n > 1]
    split = PhaseSplit(convs, groups)
    split.rows = rows_layout + split.conv_rows(m)
    return split


def split_of(plan: SubPixelPlan) -> Optional[PhaseSplit]:
    """:func:`phase_split` of ``plan``, memoised on it (the chooser and the emission ask alike)."""
    if "_split" not in plan.__dict__:
        plan.__dict__["_split"] = phase_split(plan)
    return plan.__dict__["_split"]


def macs_ratio(plan: SubPixelPlan) -> float:
    """Stored taps of the group Convs / those of the single Conv of ``plan`` (< 1: fewer MACs)."""
    split = split_of(plan)
    if split is None:
        return 1.0
    per_row = [int(np.prod(c.weight.shape[2:])) * c.weight.shape[0] for c in split.convs]
    return sum(per_row) / (plan.weight.shape[0] * int(np.prod(plan.weight.shape[2:])))
