"""Emission ``two_stage``: Conv + two low-rank Transposes.

``two_stage``: Conv in "LCR" order (the lead axis' phase first; CRD with groups) + a block-move
Transpose that puts every other phase in place + one ``[s, L] -> [L, s]`` Transpose, the crop folded
where free. The two transposes are the fast paths of ONNX Runtime's and OpenVINO's CPU Transpose.
"""

from __future__ import annotations

from ...plan.layout import output_labels, two_stage_labels
from .base import Emission
from .permuted import TWO_STAGE, emit_permuted, shuffled

__all__ = ["TWO_STAGE_EMISSION"]


class TwoStage(Emission):
    """See the module docstring; LCR rows (CRD with groups), crop folded where free."""

    name = "two_stage"
    order = "LCR"

    def emit(self, request):
        """Conv + the two-stage Transpose."""
        plan = request.plan
        return emit_permuted(
            request, plan, shuffled(plan, TWO_STAGE), [two_stage_labels(plan), output_labels(plan)]
        )


TWO_STAGE_EMISSION = TwoStage()
