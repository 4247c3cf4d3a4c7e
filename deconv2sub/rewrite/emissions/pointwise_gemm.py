"""Emission ``pointwise_gemm``: the 1x1 Conv as one Gemm.

``pointwise_gemm``: ``transpose_gather`` with the Conv as one Gemm ``[rows, C] x [C, L]`` when it
is 1x1 without pads (kernel = stride, e.g. U-Net's k2 s2), batch 1, group 1, float weights, all
sizes known and the row Gather applies: ONNX Runtime's Conv would convert to and from its blocked
layout around it. Where the Gemm does not apply the Conv stays a Conv (the emission keeps its name
in the report): with the row Gather where that applies, else one Transpose (reported as "two-stage
Transpose", as before the emission registry; ``transpose_gather`` would give two).
"""

from __future__ import annotations

import numpy as np

from ...plan.layout import gather_shuffle_ok, output_labels
from ...plan.subpixel import PlanError
from .base import Emission, conv_dtype
from .permuted import GATHER, TRANSPOSE, emit_permuted, shuffled

__all__ = ["GEMM_NOTE", "POINTWISE_GEMM_EMISSION", "gemm_applies", "pointwise_gemm_ok"]

GEMM_NOTE = "Gemm instead of the 1x1 Conv"
GEMM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def pointwise_gemm_ok(plan, material, opset: int) -> bool:
    """Whether the Conv of ``plan`` can be one Gemm.

    Whether the Conv of ``plan`` ("LCR" order) can be one Gemm (see the module docstring;
    Gemm's optional C needs opset 11).
    """
    return (
        opset >= 11
        and plan.group == 1
        and material.batch == 1
        and material.emit_inputs is None
        and np.dtype(material.dtype or plan.weight.dtype) in GEMM_DTYPES
        and all(k == 1 for k in plan.conv_kernel)
        and not any(plan.conv_pads)
        and material.in_spatial is not None
        and all(v is not None for v in material.in_spatial)
        and gather_shuffle_ok(plan, material.in_spatial)
    )


def gemm_applies(material, opset: int) -> bool:
    """:func:`pointwise_gemm_ok` for the node of ``material`` (its "LCR" plan, crop folded)."""
    if material.attrs.group != 1 or material.emit_inputs is not None:
        return False
    try:
        return pointwise_gemm_ok(material.plan("LCR", True), material, opset)
    except (PlanError, ValueError):
        return False


class PointwiseGemm(Emission):
    """See the module docstring; LCR rows (CRD with groups), crop folded where free.

    It applies to every node: a Conv where the Gemm does not.
    """

    name = "pointwise_gemm"
    order = "LCR"

    def emit(self, request):
        """Reshape the input to ``[C, L]``, Gemm, then the Transpose + row Gather."""
        em, plan, x = request.em, request.plan, request.node.inputs[0]

        def gemm(out):
            rows, channels = int(plan.weight.shape[0]), int(plan.weight.shape[1])
            flat = em.var("subpixel_matrix", conv_dtype(request, plan))
            em.node(
                "Reshape",
                "subpixel_flatten",
                [x, em.int64s("flatten_shape", [channels, -1])],
                [flat],
            )
            inputs = [em.const("subpixel_weight", plan.weight.reshape(rows, channels)), flat]
            if plan.bias is not None:
                inputs.append(em.const("subpixel_bias", plan.bias.reshape(rows, 1)))
            return em.node("Gemm", "subpixel_gemm", inputs, [out])

        m = request.material
        if pointwise_gemm_ok(plan, m, request.opset):
            return emit_permuted(
                request,
                plan,
                shuffled(plan, GATHER),
                [],
                conv=gemm,
                matrix=True,
                note=f"; {GEMM_NOTE}",
            )
        # without the Gather: one Transpose through the output labels (reported as such, not as
        # the two-stage shuffle)
        kind = GATHER if gather_shuffle_ok(plan, m.in_spatial) else TRANSPOSE
        return emit_permuted(request, plan, shuffled(plan, kind), [output_labels(plan)])


POINTWISE_GEMM_EMISSION = PointwiseGemm()
