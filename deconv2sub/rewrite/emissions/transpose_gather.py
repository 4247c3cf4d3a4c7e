"""Emission ``transpose_gather``: Conv + one 2-D Transpose + a row Gather.

``transpose_gather``: Conv in "LCR" order + one ``[s, L] -> [L, s]`` Transpose + one Gather of
whole rows that writes the output (2-D/3-D with known sizes; else the two-stage shuffle), see
:func:`deconv2sub.rewrite.shuffle.emit_gather_shuffle`.
"""

from __future__ import annotations

from ...plan.layout import gather_shuffle_ok, output_labels, two_stage_labels
from .base import Choice
from .permuted import GATHER, TWO_STAGE, emit_permuted, group_order, shuffled

__all__ = ["TRANSPOSE_GATHER_EMISSION"]


class TransposeGather:
    """See the module docstring."""

    name = "transpose_gather"
    fallback = None

    def choice(self, *, group, opset, order="auto", reason=""):
        """LCR rows (CRD with groups), crop folded where free."""
        return Choice(self.name, group_order(group), True, reason)

    def applies(self, material, choice, opset, options):
        """Always (the two-stage shuffle where the Gather does not apply)."""
        return None

    def emit(self, request):
        """Conv + Transpose + row Gather (the two-stage shuffle where the Gather does not apply)."""
        plan, m = request.plan, request.material
        kind = GATHER if gather_shuffle_ok(plan, m.in_spatial) else TWO_STAGE
        return emit_permuted(
            request, plan, shuffled(plan, kind), [two_stage_labels(plan), output_labels(plan)]
        )


TRANSPOSE_GATHER_EMISSION = TransposeGather()
