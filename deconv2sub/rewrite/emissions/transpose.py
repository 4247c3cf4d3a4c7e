"""Emission ``transpose``: Conv + one Transpose.

``transpose``: Conv (CRD) + one Transpose of the smallest rank (adjacent axes merged), the crop
folded into the phases where that costs no tap.
"""

from __future__ import annotations

from ...plan.layout import output_labels
from .base import Choice
from .permuted import TRANSPOSE, emit_permuted, shuffled

__all__ = ["TRANSPOSE_EMISSION"]


class Transpose:
    """See the module docstring."""

    name = "transpose"
    fallback = None

    def choice(self, *, group, opset, order="auto", reason=""):
        """CRD rows, crop folded where free."""
        return Choice(self.name, "CRD", True, reason)

    def applies(self, material, choice, opset, options):
        """Always."""
        return None

    def emit(self, request):
        """Conv + one Transpose."""
        plan = request.plan
        return emit_permuted(request, plan, shuffled(plan, TRANSPOSE), [output_labels(plan)])


TRANSPOSE_EMISSION = Transpose()
