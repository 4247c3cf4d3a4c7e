"""Emission ``transpose_gather``: Conv + one 2-D Transpose + a row Gather.

``transpose_gather``: Conv in "LCR" order + one ``[s, L] -> [L, s]`` Transpose + one Gather of
whole rows that writes the output (2-D/3-D with known sizes; else the two-stage shuffle), see
:func:`deconv2sub.rewrite.shuffle.emit_gather_shuffle`.
"""

from __future__ import annotations

from ...plan.layout import gather_shuffle_ok, output_labels, two_stage_labels
from .base import Emission
from .permuted import GATHER, TWO_STAGE, emit_permuted, shuffled

__all__ = ["TRANSPOSE_GATHER_EMISSION"]


class TransposeGather(Emission):
    """See the module docstring; LCR rows (CRD with groups), crop folded where free.

    It applies to every node: the two-stage shuffle where the Gather does not.
    """

    name = "transpose_gather"
    order = "LCR"

    def emit(self, request):
        """Conv + Transpose + row Gather (the two-stage shuffle where the Gather does not apply)."""
        plan, m = request.plan, request.material
        kind = GATHER if gather_shuffle_ok(plan, m.in_spatial) else TWO_STAGE
        return emit_permuted(
            request, plan, shuffled(plan, kind), [two_stage_labels(plan), output_labels(plan)]
        )


TRANSPOSE_GATHER_EMISSION = TransposeGather()
