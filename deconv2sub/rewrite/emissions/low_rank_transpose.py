"""Emission ``low_rank_transpose``: a cascade of low-rank Transposes.

``low_rank_transpose``: Conv (CRD) + the block-swap cascade of Reshape/Transpose whose every
Transpose has at most the Choice's ``max_rank`` axes (ncnn's Permute and LiteRT's XNNPACK stop at
4-D), see :func:`deconv2sub.rewrite.shuffle.emit_cascade_shuffle`; the crop folded where free.
"""

from __future__ import annotations

from ...plan.layout import cascade_plan
from ...targets import resolve as resolve_target
from ..refusal import Refusal
from ..shuffle import emit_cascade_shuffle
from .base import Emission, Emitted, emit_chain, emit_conv, plan_of

__all__ = ["LOW_RANK_TRANSPOSE_EMISSION"]


class LowRankTranspose(Emission):
    """See the module docstring; CRD rows, crop folded where free, Transposes of at most 4 axes."""

    name = "low_rank_transpose"

    def applies(self, material, choice, opset, options):
        """Whether every Transpose stays within the rank limit.

        Refused when a stage needs a Transpose above ``max_rank``, or run-time shape arithmetic
        that the target does not allow.
        """
        plan = plan_of(material, choice, options)
        if not plan.needs_shuffle:
            return None
        try:
            _, _, shape_ops = cascade_plan(
                plan, material.in_spatial, material.batch, choice.max_rank
            )
        except ValueError as err:
            return Refusal(str(err), "shuffle_rank")
        if shape_ops and not getattr(resolve_target(options.target), "dynamic_shapes", True):
            return Refusal(
                "its Reshape/Transpose shuffle needs run-time shape arithmetic (two or more "
                "symbolic sizes), which the target does not allow: give --input-shape",
                "shape_arithmetic",
            )
        return None

    def emit(self, request):
        """Conv + the block-swap cascade."""
        plan, m, em = request.plan, request.material, request.em
        kind = (
            "none"
            if not plan.needs_shuffle
            else f"Reshape/Transpose (rank <= {request.choice.max_rank})"
        )

        def conv(out):
            return emit_conv(em, plan, request.node.inputs[0], out, m)

        def shuffle(src, dst):
            emit_cascade_shuffle(em, plan, src, dst, m.in_spatial, m.batch, request.choice.max_rank)

        conv_node, conv_out, crop = emit_chain(request, plan, kind, conv, shuffle)
        return Emitted(plan, kind, conv_node, conv_out, crop)


LOW_RANK_TRANSPOSE_EMISSION = LowRankTranspose()
