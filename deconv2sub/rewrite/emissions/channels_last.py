"""Emission ``channels_last``: the channels-last shuffle.

``channels_last``: Conv ("LCR" order; CRD with groups) + a Transpose of the Conv output to
``[N, spatial..., C]`` + one Transpose into place, the crop folded where free. Made for runtimes
whose convolutions compute channels-last (OpenVINO's CPU plugin), where the first Transpose is free.
"""

from __future__ import annotations

from ...plan.layout import output_labels
from .base import Emission
from .permuted import CHANNELS_LAST, emit_permuted, shuffled

__all__ = ["CHANNELS_LAST_EMISSION"]


class ChannelsLast(Emission):
    """See the module docstring; crop folded where free."""

    name = "channels_last"

    def order_for(self, *, group, opset, order="auto"):
        """The asked order ("LCR" by default), CRD with groups."""
        if order not in ("CRD", "DCR", "LCR"):
            order = "LCR"
        if group != 1:
            order = "CRD"
        return order

    def emit(self, request):
        """Conv + the channels-last Transposes."""
        plan = request.plan
        return emit_permuted(request, plan, shuffled(plan, CHANNELS_LAST), [output_labels(plan)])


CHANNELS_LAST_EMISSION = ChannelsLast()
