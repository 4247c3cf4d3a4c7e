"""Emission ``depth_to_space``: Conv + DepthToSpace (or one Reshape/Transpose).

``depth_to_space``: Conv + DepthToSpace where it can express the shuffle, else one
Reshape/Transpose/Reshape; begin crops sliced.

Two forms. The classic one (no ``blocks`` in the Choice, honours ``ConvertOptions.shuffle`` /
``order``): Conv in CRD order (DCR before opset 11) + DepthToSpace for 4-D equal strides, else the
Reshape/Transpose shuffle on CRD rows. The one a "portable" target profile chooses
(:func:`deconv2sub.targets.chooser.choose_portable`): a cascade of DepthToSpace ops of the Choice's
block sizes and modes, the Conv's rows ordered so that the cascade lands every (channel, phase) in
place (:func:`deconv2sub.plan.blocks.d2s_cascade_rows`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...plan.blocks import d2s_cascade_rows
from ..refusal import Refusal
from ..shuffle import emit_d2s_cascade, emit_shuffle, shuffle_kind
from .base import Emission, Emitted, emit_chain, emit_conv, plan_of

__all__ = ["DEPTH_TO_SPACE_EMISSION"]

RESHAPE = "Reshape/Transpose"


def _reorders(plan, choice) -> bool:
    """Whether the cascade needs the Conv rows in another order than the plan's."""
    return len(choice.blocks) > 1 or plan.order != ("DCR" if choice.modes[0] == "DCR" else "CRD")


class DepthToSpace(Emission):
    """See the module docstring; the crop is sliced, never folded."""

    name = "depth_to_space"
    fold_crop = False

    def order_for(self, *, group, opset, order="auto"):
        """The asked order; "auto": CRD with groups or DepthToSpace CRD (opset 11), else DCR."""
        if order == "auto":
            order = "CRD" if (group != 1 or opset >= 11) else "DCR"
        if order in ("DCR", "LCR") and group != 1:
            order = "CRD"
        if order == "LCR":
            order = "CRD"
        return order

    def applies(self, material, choice, opset, options):
        """Whether the DepthToSpace form can be emitted.

        Refused when the cascade would split a grouped Conv's groups, or the Reshape shuffle
        needs an opset without Reshape's shape input.
        """
        plan = plan_of(material, choice, options)
        if not plan.needs_shuffle:
            return None
        if choice.blocks:
            if (
                _reorders(plan, choice)
                and d2s_cascade_rows(plan, choice.blocks, choice.modes) is None
            ):
                return Refusal(
                    "the DepthToSpace cascade would split the groups of the grouped Conv",
                    "d2s_cascade_groups",
                )
            return None
        if shuffle_kind(plan, opset, options.shuffle) == RESHAPE and opset < 5:
            return Refusal(f"opset {opset} has no Reshape with a shape input (needs >= 5)", "opset")
        return None

    def emit(self, request):
        """Conv + DepthToSpace (a cascade, or the classic one) or the Reshape/Transpose shuffle."""
        plan, m, choice, em = request.plan, request.material, request.choice, request.em
        row_order = None
        if not plan.needs_shuffle:
            kind = "none"
        elif choice.blocks:
            if _reorders(plan, choice):
                row_order = d2s_cascade_rows(plan, choice.blocks, choice.modes)
                plan = replace(
                    plan,
                    weight=np.ascontiguousarray(plan.weight[row_order]),
                    bias=None if plan.bias is None else np.ascontiguousarray(plan.bias[row_order]),
                )
            kind = f"DepthToSpace({choice.modes[0]})"
            if len(choice.blocks) > 1:
                kind += " cascade " + "x".join(str(b) for b in choice.blocks)
        else:
            kind = shuffle_kind(plan, request.opset, request.options.shuffle)
            if kind == RESHAPE and plan.order != "CRD":
                plan = m.planner(m.weight, m.bias, m.attrs, m.in_spatial, "CRD")

        def conv(out):
            return emit_conv(em, plan, request.node.inputs[0], out, m)

        def shuffle(src, dst):
            if choice.blocks:
                emit_d2s_cascade(em, src, dst, choice.blocks, choice.modes)
            else:
                emit_shuffle(em, plan, kind, src, dst, m.in_spatial)

        conv_node, conv_out, crop = emit_chain(request, plan, kind, conv, shuffle)
        return Emitted(plan, kind, conv_node, conv_out, crop, row_order=row_order)


DEPTH_TO_SPACE_EMISSION = DepthToSpace()
