"""Emission ``transpose``: Conv + one Transpose.

``transpose``: Conv (CRD) + one Transpose of the smallest rank (adjacent axes merged), the crop
folded into the phases where that costs no tap.
"""

from __future__ import annotations

from ...plan.layout import output_labels
from .base import Emission
from .permuted import TRANSPOSE, emit_permuted, shuffled

__all__ = ["TRANSPOSE_EMISSION"]


class Transpose(Emission):
    """See the module docstring; CRD rows, crop folded where free."""

    name = "transpose"

    def emit(self, request):
        """Conv + one Transpose."""
        plan = request.plan
        return emit_permuted(request, plan, shuffled(plan, TRANSPOSE), [output_labels(plan)])


TRANSPOSE_EMISSION = Transpose()
