"""Emission ``per_phase_channels_last``: phase Convs, channels-last shuffle.

``per_phase_channels_last``: the phase Convs of ``per_phase`` with the channels-last shuffle of
``channels_last``. Quantized weights, or a phase without taps: ``channels_last``.
"""

from __future__ import annotations

from ...plan.layout import split_labels
from .base import Emission
from .per_phase import emit_split, phase_refusal
from .permuted import CHANNELS_LAST

__all__ = ["PER_PHASE_CHANNELS_LAST_EMISSION"]


class PerPhaseChannelsLast(Emission):
    """See the module docstring; CRD rows, the crop always folded."""

    name = "per_phase_channels_last"
    fallback = "channels_last"
    fold_crop = "always"

    def applies(self, material, choice, opset, options):
        """Refused for quantized weights and where a phase has no tap."""
        return phase_refusal(material, choice, options)

    def emit(self, request):
        """Phase Convs + Concat + the channels-last Transposes."""
        return emit_split(request, CHANNELS_LAST, [split_labels(request.plan, False)])


PER_PHASE_CHANNELS_LAST_EMISSION = PerPhaseChannelsLast()
