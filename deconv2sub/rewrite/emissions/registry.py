"""The registry of emissions: name -> emission object (see :mod:`deconv2sub.rewrite.emissions`).

The order is the one shown to users (``--strategy`` choices) and tried by the tests.
"""

from __future__ import annotations

from typing import Dict

from .base import Emission
from .channels_last import CHANNELS_LAST_EMISSION
from .depth_to_space import DEPTH_TO_SPACE_EMISSION
from .depth_to_space_3d import DEPTH_TO_SPACE_3D_EMISSION
from .low_rank_transpose import LOW_RANK_TRANSPOSE_EMISSION
from .per_phase import PER_PHASE_EMISSION
from .per_phase_channels_last import PER_PHASE_CHANNELS_LAST_EMISSION
from .pointwise_gemm import POINTWISE_GEMM_EMISSION
from .transpose import TRANSPOSE_EMISSION
from .transpose_gather import TRANSPOSE_GATHER_EMISSION
from .two_stage import TWO_STAGE_EMISSION

__all__ = ["EMISSIONS", "NAMES", "get"]

EMISSIONS: Dict[str, Emission] = {
    e.name: e
    for e in (
        DEPTH_TO_SPACE_EMISSION,
        LOW_RANK_TRANSPOSE_EMISSION,
        TRANSPOSE_EMISSION,
        TWO_STAGE_EMISSION,
        TRANSPOSE_GATHER_EMISSION,
        POINTWISE_GEMM_EMISSION,
        PER_PHASE_EMISSION,
        CHANNELS_LAST_EMISSION,
        PER_PHASE_CHANNELS_LAST_EMISSION,
        DEPTH_TO_SPACE_3D_EMISSION,
    )
}
NAMES = tuple(EMISSIONS)


def get(name: str) -> Emission:
    """The emission called ``name``; ValueError naming the choices for an unknown one."""
    try:
        return EMISSIONS[name]
    except KeyError:
        raise ValueError(f"unknown emission {name!r} (choose from: {', '.join(NAMES)})") from None
