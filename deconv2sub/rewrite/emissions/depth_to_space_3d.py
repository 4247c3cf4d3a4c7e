"""Emission ``depth_to_space_3d``: Conv3d + one rank-4 Reshape/Transpose + DepthToSpace (CRD).

``depth_to_space_3d``: the 3-D shuffle with no tensor above rank 4 but the Conv output and the
result (both the model's own rank 5), for toolchains whose Reshape/Permute stop at 4-D with the
batch first (ncnn through pnnx: the block-swap cascade of ``low_rank_transpose`` has rank-4 steps
whose first dim is not the batch, which it rejects); the crop folded where free, else sliced.

Derivation. Strides ``(s0, s1, s2)`` with ``s1 == s2 == b >= 2``, ``P = s0*s1*s2`` phases, ``M``
output channels, Conv output ``z`` of shape ``[N, P*M, D, H, W]`` (``D, H, W``: the input sizes plus
the plan's growth) in "DCR" order
(:meth:`deconv2sub.plan.subpixel.SubPixelPlan.row_layout` ``[S0, S1, S2, M]``; with ``s0 == 1``
the ``S0`` factor is absent and ``a = 0`` below): row ``((a*s1 + p)*s2 + q)*M + m`` holds phase
``(a, p, q)`` of output channel ``m``. The sub-pixel interleave (before the crop, see
:mod:`deconv2sub.plan.subpixel`) is

    Y[n, m, s0*d + a, b*h + p, b*w + q] = z[n, ((a*s1 + p)*s2 + q)*M + m, d, h, w].

Read ``z`` row-major as the indices ``(n, a, p, q, m, d, h, w)``:

1. Reshape ``[N, P, M*D, H*W]``: the runs ``(a, p, q)``, ``(m, d)``, ``(h, w)`` are adjacent, so
   this only regroups them;
2. Transpose ``perm [0, 2, 1, 3]``: ``[N, M*D, P, H*W]``, in the element order
   ``(n, m, d, a, p, q, h, w)``;
3. Reshape ``[N, M*D*P, H, W]``: channel ``c = ((m*D + d)*s0 + a)*b*b + p*b + q``;
4. DepthToSpace(``b``, CRD): ``out[n, c', b*h + i, b*w + j] = in[n, c'*b*b + i*b + j, h, w]``, so
   ``c' = (m*D + d)*s0 + a``, ``i = p``, ``j = q``: ``[N, M*D*s0, H*b, W*b]``;
5. Reshape ``[N, M, D*s0, H*b, W*b]``: ``c' = m*(D*s0) + (s0*d + a)``, channel ``m`` at depth
   ``s0*d + a``, which is ``Y`` above.

Every Reshape and the Transpose have rank 4 with the batch first, except the last Reshape, to the
output's own rank. (CRD rows ``(m, a, p, q)`` would need the depth phase ``a`` moved past ``d``
and the other two past ``h`` and ``w``: more than one rank-4 swap.) Per-channel consumers sunk
above the shuffle map through the DCR rows' channels (:meth:`SubPixelPlan.row_channels`).
With the crop folded (:func:`deconv2sub.plan.subpixel.make_plan`) the phases are the output's;
the row layout, hence all of the above, is the same. The batch is the known one, or copied
(``0``); the spatial sizes are constants where the model fixes them (one symbolic size is the
Reshape's one ``-1``), else computed from the Conv output's run-time shape
(:func:`deconv2sub.rewrite.shuffle.emit_reshape_targets`, as the cascade of
:func:`deconv2sub.rewrite.shuffle.emit_cascade_shuffle` does).

Refused (the chooser then takes ``low_rank_transpose``) for other ranks, ``s1 != s2`` or
``s1 == 1`` (no one DepthToSpace block for both axes), grouped Convs (DCR rows split the groups),
opsets before 11 (DepthToSpace CRD) and run-time shape arithmetic on a static-shape target.
"""

from __future__ import annotations

from typing import Optional

from ...plan.layout import conv_output_layout, size_mul
from ...targets import resolve as resolve_target
from ..refusal import Refusal
from ..shuffle import emit_d2s_cascade, emit_reshape_targets
from .base import Emission, Emitted, emit_chain, emit_conv

__all__ = ["DEPTH_TO_SPACE_3D_EMISSION", "depth_to_space_3d_refusal"]

KIND = "Reshape/Transpose (rank 4) + DepthToSpace(CRD)"
_WHAT = "Conv3d + DepthToSpace"


def _strides(material) -> list:
    """The strides the node is planned with (an axis of input size 1 may have a wider one)."""
    attrs = material.effective_attrs()
    return [int(v) for v in (attrs.strides or [1] * material.rank)]


def _symbolic_sizes(material) -> int:
    """How many spatial sizes of the node's input the model leaves symbolic."""
    spatial = material.in_spatial or [None] * material.rank
    return sum(v is None for v in spatial)


def depth_to_space_3d_refusal(
    material, opset: int, dynamic_shapes: bool = True
) -> Optional[Refusal]:
    """Why ``depth_to_space_3d`` cannot write the node, or None.

    Args:
        material: the node (:class:`deconv2sub.rewrite.material.NodeMaterial`).
        opset: the model's default-domain opset.
        dynamic_shapes: whether the target allows run-time shape arithmetic (two or more symbolic
            spatial sizes need it).

    Returns:
        The Refusal (a readable reason and a code), or None when the emission applies.
    """
    if material.rank != 3:
        return Refusal(f"{_WHAT}: 3-D only (the node is {material.rank}-D)", "d2s3d_rank")
    strides = _strides(material)
    if strides[1] != strides[2] or strides[1] < 2:
        return Refusal(
            f"{_WHAT}: strides {strides} need s1 == s2 >= 2 (one DepthToSpace block for H and W)",
            "d2s3d_strides",
        )
    if material.attrs.group != 1:
        return Refusal(
            f"{_WHAT}: its DCR rows would split the groups of the grouped Conv", "d2s3d_groups"
        )
    if opset < 11:
        return Refusal(f"{_WHAT}: DepthToSpace(CRD) needs opset >= 11 (the model has {opset})",
                       "opset")
    if _symbolic_sizes(material) > 1 and not dynamic_shapes:
        return Refusal(
            f"{_WHAT}: its Reshapes need run-time shape arithmetic (two or more symbolic sizes), "
            "which the target does not allow: give --input-shape",
            "shape_arithmetic",
        )
    return None


def _targets(plan, in_spatial, batch) -> tuple:
    """The three Reshape targets after the batch, as sizes: split, merged, output."""
    layout = dict(conv_output_layout(plan, in_spatial, batch))
    d, h, w = (layout[f"Q{a}"] for a in range(3))
    s0, b = plan.strides[0], plan.strides[1]
    m, p = (plan.out_channels, ()), (plan.phases, ())
    split = [p, size_mul([m, d]), size_mul([h, w])]
    merged = [size_mul([m, d, p]), h, w]
    out = [m, size_mul([d, (s0, ())]), size_mul([h, (b, ())]), size_mul([w, (b, ())])]
    return layout["N"], split, merged, out


class DepthToSpace3d(Emission):
    """See the module docstring; DCR rows, crop folded where free."""

    name = "depth_to_space_3d"
    fallback = "low_rank_transpose"
    order = "DCR"

    def order_for(self, *, group, opset, order="auto"):
        """DCR rows; CRD for a grouped node (refused by :meth:`applies`, never planned DCR)."""
        return "DCR" if group == 1 else "CRD"

    def applies(self, material, choice, opset, options):
        """See :func:`depth_to_space_3d_refusal` (the target's ``dynamic_shapes`` from options)."""
        dynamic = options.dynamic_shapes and getattr(
            resolve_target(options.target), "dynamic_shapes", True
        )
        return depth_to_space_3d_refusal(material, opset, dynamic)

    def emit(self, request):
        """Conv3d (DCR rows) + Reshape, Transpose, Reshape, DepthToSpace(CRD), Reshape."""
        plan, m, em = request.plan, request.material, request.em
        batch, split, merged, out = _targets(plan, m.in_spatial, m.batch)

        def conv(dst):
            return emit_conv(em, plan, request.node.inputs[0], dst, m)

        def shuffle(src, dst):
            split_t, rows_t, merge_t = emit_reshape_targets(em, src, [
                ("split_shape", batch, split), ("rows_shape", batch, merged),
                ("merge_shape", batch, out),
            ])
            phases, moved, rows, planes = (
                em.var(v) for v in ("phases", "phases_inner", "rows", "planes")
            )
            em.node("Reshape", "subpixel_split_phases", [src, split_t], [phases])
            em.node("Transpose", "subpixel_phases_inner", [phases], [moved], {"perm": [0, 2, 1, 3]})
            em.node("Reshape", "subpixel_rows", [moved, rows_t], [rows])
            emit_d2s_cascade(em, rows, planes, [int(plan.strides[1])], ["CRD"])
            em.node("Reshape", "subpixel_merge", [planes, merge_t], [dst])

        conv_node, conv_out, crop = emit_chain(request, plan, KIND, conv, shuffle)
        return Emitted(plan, KIND, conv_node, conv_out, crop)


DEPTH_TO_SPACE_3D_EMISSION = DepthToSpace3d()
