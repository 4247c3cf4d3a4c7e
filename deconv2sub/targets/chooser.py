"""How one ConvTranspose is emitted: channel order of the Conv, crop folding, and the shuffle.

Every strategy is exact (taps copied, values moved, never recomputed); they differ only in speed, which
depends on the runtime. Fixed strategies give reproducible output:

* ``"depth_to_space"``: Conv (CRD, or DCR before opset 11) + DepthToSpace where it can express the
  shuffle (4-D, equal strides), else one Reshape/Transpose/Reshape; begin crops sliced. The historical
  emission; honours ``ConvertOptions.shuffle`` / ``order``.
* ``"transpose"``: Conv (CRD) + one Transpose of the smallest rank (adjacent axes merged), crop folded
  into the phases where that costs no tap.
* ``"two_stage"``: Conv in "LCR" order (the lead axis' phase first; CRD with groups) + a block-move
  Transpose that puts every other phase in place + one ``[s, L] -> [L, s]`` Transpose, crop folded where
  free. The two transposes are the fast paths of ONNX Runtime's and OpenVINO's CPU Transpose.
* ``"transpose_gather"``: Conv in "LCR" order + one ``[s, L] -> [L, s]`` Transpose + one Gather of whole
  rows that writes the output (2-D/3-D with known sizes; else ``two_stage``), see
  :func:`deconv2sub.rewrite.shuffle.emit_gather_shuffle`.
* ``"pointwise_gemm"``: ``transpose_gather`` with the Conv as one Gemm when it is 1x1 without pads
  (kernel = stride, e.g. U-Net's k2 s2), batch 1, group 1: ONNX Runtime's Conv would convert to and from
  its blocked layout around it. Else ``transpose_gather``.
* ``"per_phase"``: one Conv per group of output phases that use the same kernel span, each with only
  its own taps (fewer MACs when the kernel is not a multiple of the stride, e.g. k3 s2) and the crop
  always folded away, Concat, then the two-stage shuffle (:mod:`deconv2sub.plan.phases`).
* ``"channels_last"``: Conv ("LCR" order; CRD with groups) + a Transpose of the Conv output to
  ``[N, spatial..., C]`` + one Transpose into place, crop folded where free. Made for runtimes whose
  convolutions compute channels-last (OpenVINO's CPU plugin), where the first Transpose is free.
* ``"per_phase_channels_last"``: the phase Convs of ``per_phase`` with the channels-last shuffle.
* ``"default"``: the measured best fixed choice per node shape for ``ConvertOptions.target``, see
  :func:`choose_default`.
* ``"auto"``: measure the candidates per node on a runtime (:mod:`deconv2sub.autotune`), cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dc_replace

import numpy as np

from ..plan.blocks import block_factors
from ..plan.subpixel import ConvTransposeAttrs, PlanError, resolve_pads
from ..rewrite.shuffle import gather_shuffle_ok
from . import resolve as resolve_target
from .profile import TargetProfile

STRATEGIES = ("default", "auto", "depth_to_space", "low_rank_transpose", "transpose", "two_stage",
              "transpose_gather", "pointwise_gemm", "per_phase", "channels_last", "per_phase_channels_last")
FIXED = ("depth_to_space", "low_rank_transpose", "transpose", "two_stage", "transpose_gather", "pointwise_gemm",
         "per_phase", "channels_last", "per_phase_channels_last")

# Shuffle kinds as reported in NodeReport.shuffle
D2S_CRD, D2S_DCR, RESHAPE, TRANSPOSE, TWO_STAGE, GATHER, CHANNELS_LAST, NONE = (
    "DepthToSpace(CRD)", "DepthToSpace(DCR)", "Reshape/Transpose", "Transpose", "two-stage Transpose",
    "Transpose + row Gather", "channels-last Transpose", "none")
GEMM_NOTE = "Gemm instead of the 1x1 Conv"


@dataclass(frozen=True)
class Emission:
    """A concrete emission for one node."""

    strategy: str  # one of FIXED
    order: str  # plan channel order: "CRD", "DCR" or "LCR"
    fold_crop: object  # False, True (where free) or "always" (see deconv2sub.plan.subpixel.make_plan)
    reason: str = ""
    # "depth_to_space" chosen by a target profile: the DepthToSpace cascade (block sizes and modes,
    # e.g. (4, 2) and ("CRD", "CRD") for stride 8 with at most 4 per block); empty: the classic emission
    blocks: tuple = ()
    modes: tuple = ()
    # "low_rank_transpose": the largest Transpose rank allowed
    max_rank: int = 4


def fixed(name: str, *, group: int, rank: int, strides, opset: int, order: str = "auto", reason: str = "") -> Emission:
    """The Emission of fixed strategy ``name`` for a node with these properties."""
    if name == "depth_to_space" or opset < 5:  # Reshape with a shape input needs opset 5
        if order == "auto":
            order = "CRD" if (group != 1 or opset >= 11) else "DCR"
        if order in ("DCR", "LCR") and group != 1:
            order = "CRD"
        if order == "LCR":
            order = "CRD"
        return Emission("depth_to_space", order, False, reason)
    if name == "transpose":
        return Emission("transpose", "CRD", True, reason)
    if name == "low_rank_transpose":
        return Emission("low_rank_transpose", "CRD", True, reason)
    if name in ("two_stage", "transpose_gather", "pointwise_gemm"):
        return Emission(name, "LCR" if group == 1 else "CRD", True, reason)
    if name == "per_phase":
        return Emission("per_phase", "CRD", "always", reason)
    if name == "channels_last":
        if order not in ("CRD", "DCR", "LCR"):
            order = "LCR"
        if group != 1:
            order = "CRD"
        return Emission("channels_last", order, True, reason)
    if name == "per_phase_channels_last":
        return Emission("per_phase_channels_last", "CRD", "always", reason)
    raise ValueError(f"unknown strategy {name!r} (choose from: {', '.join(STRATEGIES)})")


def plan_for(material, order: str, fold_crop, bias: bool = True):
    """``make_plan`` for the node of ``material``, memoised on it (the choice and the emission of a node
    need the same plans; planning copies the weight, so big models should not plan twice)."""
    from ..rewrite import graph_pass as rewrite  # its make_plan: the planner the pass uses (tests plant faults there)

    cache = material.__dict__.setdefault("_plans", {})
    key = (order, fold_crop, bias)
    if key not in cache:
        cache[key] = rewrite.make_plan(material.weight, material.bias if bias else None, effective_attrs(material),
                                       material.in_spatial, order, fold_crop)
    return cache[key]


def effective_attrs(material) -> ConvTransposeAttrs:
    """The attributes to plan with. On an axis whose input size is known to be 1 the stride changes
    nothing (the output is ``s*(I - 1) + op + d*(K - 1) + 1 - pads``, and ``I - 1 = 0``), so it becomes
    ``d*(K - 1) + 1 + op``: every phase then has at most one tap, and the Conv is 1x1 with the
    original's MACs instead of a k x k Conv over a zero-padded input (the latent projection of
    DCGAN-style generators: k4 s1 on 1x1 would cost 16x). Pads are resolved first (``auto_pad``,
    ``output_shape``) with the original stride; memoised on ``material``."""
    if "_attrs" in material.__dict__:
        return material.__dict__["_attrs"]
    attrs = material.attrs
    rank = material.weight.ndim - 2
    spatial = material.in_spatial
    kernel = list(material.weight.shape[2:])
    strides = [int(v) for v in (attrs.strides or [1] * rank)]
    dil = [int(v) for v in (attrs.dilations or [1] * rank)]
    opad = [int(v) for v in (attrs.output_padding or [0] * rank)]
    wanted = list(strides)
    if spatial is not None and len(spatial) == rank and len(strides) == rank and len(dil) == rank \
            and len(opad) == rank:
        for a in range(rank):
            if spatial[a] == 1:
                wanted[a] = max(strides[a], dil[a] * (kernel[a] - 1) + 1 + opad[a])
    result = attrs
    if wanted != strides:
        try:
            begins, ends = resolve_pads(attrs, kernel, spatial)
        except PlanError:
            begins = None
        if begins is not None and min(begins + ends, default=0) >= 0:
            result = dc_replace(attrs, strides=wanted, pads=list(begins) + list(ends), auto_pad="NOTSET",
                                output_shape=None)
    material.__dict__["_attrs"] = result
    return result


def split_for(plan):
    """:func:`deconv2sub.plan.phases.phase_split` of ``plan``, memoised on it."""
    from ..plan.phases import phase_split

    if "_split" not in plan.__dict__:
        plan.__dict__["_split"] = phase_split(plan)
    return plan.__dict__["_split"]


_GEMM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def pointwise_gemm_ok(plan, material, opset: int) -> bool:
    """Whether the Conv of ``plan`` ("LCR" order) is emitted as one Gemm ``[rows, C] x [C, L]`` (strategy
    "pointwise_gemm"): a 1x1 kernel without pads, group 1, batch 1, float weights, all sizes known, and the
    row-Gather shuffle applies (Gemm's optional C needs opset 11)."""
    return (opset >= 11 and plan.group == 1 and material.batch == 1 and material.emit_inputs is None
            and np.dtype(material.dtype or plan.weight.dtype) in _GEMM_DTYPES
            and all(k == 1 for k in plan.conv_kernel) and not any(plan.conv_pads)
            and material.in_spatial is not None and all(v is not None for v in material.in_spatial)
            and gather_shuffle_ok(plan, material.in_spatial))


def gemm_applies(material, opset: int) -> bool:
    """:func:`pointwise_gemm_ok` for the node of ``material`` (its "LCR" plan, memoised for the emission)."""

    if material.attrs.group != 1 or material.emit_inputs is not None:
        return False
    try:
        return pointwise_gemm_ok(plan_for(material, "LCR", True), material, opset)
    except (PlanError, ValueError):
        return False


PER_PHASE_MAX_CONVS = 4  # more: many small Convs + a Concat cost more than they save (3-D k3 s2: 8)


TARGETS = ("onnxruntime", "openvino")


def choose_default(*, group: int, rank: int, strides, opset: int, material=None,
                   target: str = "onnxruntime") -> Emission:
    """The fixed choice of ``strategy="default"`` for the ``target`` runtime, from the measurements of
    benchmarks/bench_blocks.py (ONNX Runtime and OpenVINO CPU).

    ONNX Runtime (``target="onnxruntime"``):

    * ``per_phase`` when at most 4 phase Convs do and either the shared kernel has zero taps (kernel not
      a multiple of the stride, ENet's k3 s2: 9 of 16; +25-40 %), or they fold a crop away and their
      shuffle is one 2-D Transpose + a row Gather (the last axis' phase groups lead the rows: DCGAN's
      k4 s2 p1, 1.03-1.07x -> 1.11-1.13x; not FCN's k16 s8 p4, whose phase groups would need an n-D
      Transpose: 0.62x);
    * ``pointwise_gemm`` when the Conv is 1x1 without pads (kernel = stride: U-Net's k2 s2), batch 1,
      group 1, 2-D/3-D, unless a BatchNormalization follows (a Conv absorbs it): ONNX Runtime runs the
      Conv in its blocked layout with a reorder on each side, which costs more than the Gemm saves
      (U-Net 0.77x -> 0.86-0.92x);
    * ``transpose_gather`` otherwise (and for quantized weights): one 2-D Transpose (ONNX Runtime's
      fastest interleave) and a Gather of whole rows that writes the output and folds the crop of every
      axis but the last; 1-D, or sizes unknown: ``two_stage`` (two low-rank Transposes).

    OpenVINO (``target="openvino"``): its CPU convolutions compute channels-last, so the shuffle starts
    with a Transpose to ``[N, spatial..., C]`` that costs nothing there, and one Transpose from that layout
    does the rest (:func:`deconv2sub.rewrite.shuffle.emit_permuted_shuffle` with ``channels_last``):

    * ``per_phase_channels_last`` when at most 4 phase Convs do and they save taps or fold a crop away;
    * ``channels_last`` otherwise, with the Conv channels in "LCR" order (the lead phase first: +10-25 %
      over DCR/CRD on U-Net k2 s2 and 3-D k2 s2).

    On ONNX Runtime the channels-last emissions run at 0.4-1.0x of the original (its generic n-D
    Transpose is slow), on OpenVINO the ONNX Runtime rule at ~1.3x against ~1.6x: hence one rule each.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (choose from: {', '.join(TARGETS)})")
    openvino = target == "openvino"
    single_name = "channels_last" if openvino else "transpose_gather"
    split_name = "per_phase_channels_last" if openvino else "per_phase"
    reason = ("default: channels-last transpose (OpenVINO)" if openvino
              else "default: transpose + row Gather (two-stage transpose where the Gather does not apply)")
    if material is not None and material.emit_inputs is None and opset >= 5:
        from ..plan.phases import macs_ratio
    
        try:
            single = plan_for(material, "CRD", True)
            split_plan = plan_for(material, "CRD", "always")
            split = split_for(split_plan) if single.phases > 1 else None
        except (PlanError, ValueError):
            single = split = None
        if split is not None and 1 < len(split.convs) <= PER_PHASE_MAX_CONVS:
            ratio = macs_ratio(single)
            if ratio < 1.0:
                return fixed(split_name, group=group, rank=rank, strides=strides, opset=opset,
                             reason=f"default: {len(split.convs)} phase Convs ({ratio:.0%} of the shared "
                                    f"kernel's taps)" + (", channels-last shuffle (OpenVINO)" if openvino else ""))
            if single.needs_crop and openvino:
                return fixed(split_name, group=group, rank=rank, strides=strides, opset=opset,
                             reason=f"default: {len(split.convs)} phase Convs (the crop folded away), "
                                    "channels-last shuffle (OpenVINO)")
            if single.needs_crop and gather_shuffle_ok(split_plan, material.in_spatial, split, material.batch):
                return fixed(split_name, group=group, rank=rank, strides=strides, opset=opset,
                             reason=f"default: {len(split.convs)} phase Convs (the crop folded away) + "
                                    "transpose + row Gather")
            if single.needs_crop:
                reason += (" (phase Convs that only save the crop measured slower on ONNX Runtime when their "
                           "shuffle needs more than one 2-D Transpose and a Gather)")
        elif split is not None and len(split.convs) > PER_PHASE_MAX_CONVS:
            reason += f" ({len(split.convs)} phase Convs would be too many)"
        if not openvino and single is not None and gemm_applies(material, opset):
            if "BatchNormalization" in material.consumers:
                reason += " (a 1x1 Conv, kept so that the BatchNormalization after it fuses into it)"
            else:
                return fixed("pointwise_gemm", group=group, rank=rank, strides=strides, opset=opset,
                             reason="default: Gemm (1x1 kernel, batch 1) + transpose + row Gather")
    return fixed(single_name, group=group, rank=rank, strides=strides, opset=opset, reason=reason)


def needs_runtime_crop(material) -> bool:
    """Whether the node's crop is computed at run time: ``output_shape`` with a symbolic input size
    (its pads depend on the run-time size, see :func:`deconv2sub.rewrite.shuffle.emit_runtime_crop`)."""
    return bool(material.attrs.output_shape) and (material.in_spatial is None
                                                  or any(v is None for v in material.in_spatial))


def select(material, opset: int, options) -> Emission:
    """The Emission for one node (``material`` from :func:`deconv2sub.rewrite.graph_pass.check`)."""
    attrs = material.attrs
    rank = material.weight.ndim - 2
    strides = list(attrs.strides or [1] * rank)
    name = options.strategy
    if name == "default" and (options.shuffle != "auto" or options.order != "auto"):
        name = "depth_to_space"  # the DepthToSpace knobs were set explicitly: they ask for that emission
    if name == "default":
        profile = resolve_target(options.target)
        if profile.keeps(strides):
            raise PlanError(f"target '{profile.name}' keeps ConvTranspose for strides {strides}")
        if profile.rule == "portable":
            return choose_portable(material, opset, profile)
        if needs_runtime_crop(material):
            # The smallest graph: one Conv, DepthToSpace (or one Reshape/Transpose), the run-time Slice.
            return fixed("depth_to_space", group=attrs.group, rank=rank, strides=strides, opset=opset,
                         reason="default: DepthToSpace/Reshape shuffle (crop computed at run time: "
                                "output_shape with a symbolic input size)")
        return choose_default(group=attrs.group, rank=rank, strides=strides, opset=opset, material=material,
                              target=profile.rule)
    if name == "auto":
        from ..autotune import tune

        return tune(material, opset, options)
    if name not in FIXED:
        raise ValueError(f"unknown strategy {name!r} (choose from: {', '.join(STRATEGIES)})")
    return fixed(name, group=attrs.group, rank=rank, strides=strides, opset=opset, order=options.order,
                 reason=f"fixed strategy '{name}'")


def choose_portable(material, opset: int, profile: TargetProfile) -> Emission:
    """The emission of a profile with the "portable" rule: one Conv + DepthToSpace where the target's
    DepthToSpace can express the shuffle (2-D, equal strides; a cascade of smaller blocks above
    ``max_block``; the first of the profile's modes that the opset and the groups allow), else the
    block-swap cascade of Reshape/Transpose of at most ``max_rank`` axes; the crop folded where free.
    The reason names the profile and every form it refused, with why."""
    attrs = effective_attrs(material)
    rank = material.weight.ndim - 2
    strides = [int(v) for v in (attrs.strides or [1] * rank)]
    fold = profile.fold_crop
    label = f"target {profile.name}"
    refused = []
    if all(v == 1 for v in strides):
        return Emission("depth_to_space", "CRD", fold, f"{label}: stride 1, no shuffle")
    if rank != 2 or strides[0] != strides[1]:
        refused.append("DepthToSpace: 4-D with one block size only")
    elif not profile.depth_to_space:
        refused.append("DepthToSpace: the target has none")
    else:
        blocks = block_factors(strides[0], profile.max_block)
        if blocks is None:
            refused.append(f"DepthToSpace: stride {strides[0]} is no product of blocks <= {profile.max_block}")
        else:
            for mode in profile.depth_to_space:
                if mode == "CRD" and opset < 11:
                    refused.append("DepthToSpace(CRD): needs opset >= 11")
                    continue
                if mode == "DCR" and attrs.group != 1:
                    refused.append("DepthToSpace(DCR): would split the groups of the grouped Conv")
                    continue
                if len(blocks) > 1 and material.emit_inputs is not None:
                    refused.append(f"DepthToSpace({mode}) cascade: would reorder a quantized weight")
                    continue
                cascade = "" if len(blocks) == 1 else " cascade " + "x".join(str(b) for b in blocks)
                return Emission("depth_to_space", "DCR" if (mode == "DCR" and len(blocks) == 1) else "CRD",
                                fold, f"{label}: Conv + DepthToSpace({mode}){cascade}" + _refusals(refused),
                                blocks=tuple(blocks), modes=(mode,) * len(blocks))
    if opset < 5:
        raise PlanError(f"opset {opset} has no Reshape with a shape input (needs >= 5); " + "; ".join(refused))
    return Emission("low_rank_transpose", "CRD", fold,
                    f"{label}: Reshape/Transpose of rank <= {profile.max_rank}" + _refusals(refused),
                    max_rank=profile.max_rank)


def _refusals(refused) -> str:
    return "" if not refused else " (refused: " + "; ".join(refused) + ")"
