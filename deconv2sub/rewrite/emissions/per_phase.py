"""Emission ``per_phase``: one Conv per group of phases.

``per_phase``: one Conv per group of output phases that use the same kernel span, each with only
its own taps (fewer MACs when the kernel is not a multiple of the stride, e.g. k3 s2) and the crop
always folded away, Concat, then the row Gather where it applies, else the two-stage shuffle
(:mod:`deconv2sub.plan.phases`). Quantized weights, or a phase without taps: ``two_stage``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ...plan.layout import gather_shuffle_ok, split_labels
from ...plan.phases import split_of
from ...plan.subpixel import SubPixelPlan
from ..refusal import Refusal
from ..shuffle import Emitter
from .base import Emission, conv_dtype, plan_of
from .permuted import GATHER, TWO_STAGE, emit_permuted, shuffled

__all__ = ["PER_PHASE_EMISSION", "emit_phase_convs", "phase_note", "phase_refusal"]


def phase_refusal(material, choice, options) -> Optional[Refusal]:
    """Why the phase Convs cannot be emitted (quantized weight, a phase without taps), or None."""
    if material.emit_inputs is not None:
        return Refusal("per_phase impossible (quantized weight)", "per_phase_quantized")
    if split_of(plan_of(material, choice, options)) is None:
        return Refusal("per_phase impossible (a phase without taps)", "per_phase_empty_phase")
    return None


def phase_note(plan: SubPixelPlan, split) -> str:
    """The report's note on the phase Convs: how many, their kernels, the taps saved."""
    kernels = ", ".join("x".join(map(str, c.weight.shape[2:])) for c in split.convs)
    phases_per_conv = plan.phases // len(split.convs)
    taps = sum(int(np.prod(c.weight.shape[2:])) for c in split.convs) * phases_per_conv
    shared = plan.phases * int(
        np.prod([(a.dilation * (a.kernel - 1)) // a.stride + 1 for a in plan.axes])
    )
    what = (
        "per-phase Convs"
        if phases_per_conv == 1
        else f"phase-group Convs ({phases_per_conv} phases each)"
    )
    return (
        f"{len(split.convs)} {what} ({kernels}), no begin crop: {taps} taps where one Conv "
        f"would store {shared}"
    )


def emit_phase_convs(em: Emitter, plan: SubPixelPlan, split, x, out, dtype):
    """One Conv per phase group (only its own taps) + Concat into ``out``; returns the Concat."""
    outs = []
    for i, pc in enumerate(split.convs):
        tag = (
            "" if i == 0 else f"_p{i}"
        )  # the first keeps the single-Conv names (subpixel_conv, ...)
        inputs = [x, em.const(f"subpixel_weight{tag}", pc.weight)]
        if pc.bias is not None:
            inputs.append(em.const(f"subpixel_bias{tag}", pc.bias))
        z = em.var(f"subpixel_phase{i}", dtype)
        em.node(
            "Conv",
            f"subpixel_conv{tag}",
            inputs,
            [z],
            {
                "kernel_shape": list(pc.weight.shape[2:]),
                "strides": [1] * plan.rank,
                "dilations": pc.dilations,
                "pads": pc.pads,
                "group": plan.group,
            },
        )
        outs.append(z)
    if len(outs) == 1:
        return em.node("Identity", "subpixel_phases", outs, [out])
    return em.node("Concat", "subpixel_phases", outs, [out], {"axis": 1})


def emit_split(request, kind: str, stages):
    """The phase Convs of the request's plan, then the shuffle ``kind`` through ``stages``."""
    plan, x = request.plan, request.node.inputs[0]
    split = split_of(plan)

    def convs(out):
        return emit_phase_convs(request.em, plan, split, x, out, conv_dtype(request, plan))

    return emit_permuted(
        request,
        plan,
        shuffled(plan, kind),
        stages,
        conv=convs,
        split=split,
        rows_layout=split.rows,
        note=f"; {phase_note(plan, split)}",
    )


class PerPhase(Emission):
    """See the module docstring; CRD rows, the crop always folded."""

    name = "per_phase"
    fallback = "two_stage"
    fold_crop = "always"

    def applies(self, material, choice, opset, options):
        """Refused for quantized weights and where a phase has no tap."""
        return phase_refusal(material, choice, options)

    def emit(self, request):
        """Phase Convs + Concat + row Gather or two-stage shuffle."""
        plan, m = request.plan, request.material
        split = split_of(plan)
        kind = GATHER if gather_shuffle_ok(plan, m.in_spatial, split, m.batch) else TWO_STAGE
        return emit_split(request, kind, [split_labels(plan, True), split_labels(plan, False)])


PER_PHASE_EMISSION = PerPhase()
