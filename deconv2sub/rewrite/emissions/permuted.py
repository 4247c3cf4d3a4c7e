"""What the Transpose-based emissions share: a Conv, then labelled permutations or a row Gather.

The shuffle kinds they report, and :func:`emit_permuted`, which writes Conv -> shuffle -> crop for
one of them (see :func:`deconv2sub.rewrite.shuffle.emit_permuted_shuffle` and
:func:`deconv2sub.rewrite.shuffle.emit_gather_shuffle`).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from ...plan.layout import gather_crop
from ...plan.subpixel import SubPixelPlan
from ..shuffle import emit_gather_shuffle, emit_permuted_shuffle
from .base import EmitRequest, Emitted, emit_chain, emit_conv

__all__ = [
    "CHANNELS_LAST",
    "GATHER",
    "NONE",
    "TRANSPOSE",
    "TWO_STAGE",
    "emit_permuted",
    "shuffled",
]

# Shuffle kinds as reported in NodeReport.shuffle
TRANSPOSE, TWO_STAGE, GATHER, CHANNELS_LAST, NONE = (
    "Transpose",
    "two-stage Transpose",
    "Transpose + row Gather",
    "channels-last Transpose",
    "none",
)


def shuffled(plan: SubPixelPlan, kind: str) -> str:
    """``kind``, or "none" when the plan needs no shuffle (all strides 1)."""
    return kind if plan.needs_shuffle else NONE


def emit_permuted(
    request: EmitRequest,
    plan: SubPixelPlan,
    kind: str,
    stages: Sequence[Sequence[str]],
    *,
    conv: Optional[Callable] = None,
    split=None,
    rows_layout: Optional[list] = None,
    matrix: bool = False,
    note: str = "",
) -> Emitted:
    """Write Conv -> permuted shuffle or row Gather -> crop.

    Conv (``conv(out)``, default the single Conv) -> shuffle -> crop. ``kind`` GATHER: the row
    Gather (it folds the crop of every axis but the last), else the Transposes through the label
    orders ``stages``, channels-last first for kind CHANNELS_LAST.
    """
    em, m = request.em, request.material
    x = request.node.inputs[0]
    gather = kind == GATHER

    def shuffle(src, dst):
        if gather:
            emit_gather_shuffle(em, plan, src, dst, m.in_spatial, m.batch, rows_layout, split)
        else:
            emit_permuted_shuffle(
                em,
                plan,
                stages,
                src,
                dst,
                m.in_spatial,
                m.batch,
                rows_layout,
                channels_last=kind == CHANNELS_LAST,
            )

    if conv is None:

        def conv(out):
            return emit_conv(em, plan, x, out, m)

    conv_node, conv_out, crop = emit_chain(
        request, plan, kind, conv, shuffle, gather_crop(plan) if gather else None
    )
    return Emitted(
        plan,
        kind,
        conv_node,
        conv_out,
        crop,
        rows_layout=rows_layout,
        split=split,
        matrix=matrix,
        note=note,
    )
