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
* ``"per_phase"``: one Conv per group of output phases that use the same kernel span, each with only
  its own taps (fewer MACs when the kernel is not a multiple of the stride, e.g. k3 s2) and the crop
  always folded away, Concat, then the two-stage shuffle (:mod:`deconv2sub.perphase`).
* ``"default"``: the measured best fixed choice per node shape, see :func:`choose_default`.
* ``"auto"``: measure the candidates per node on a runtime (:mod:`deconv2sub.autotune`), cached.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("default", "auto", "depth_to_space", "transpose", "two_stage", "per_phase")
FIXED = ("depth_to_space", "transpose", "two_stage", "per_phase")

# Shuffle kinds as reported in NodeReport.shuffle
D2S_CRD, D2S_DCR, RESHAPE, TRANSPOSE, TWO_STAGE, NONE = (
    "DepthToSpace(CRD)", "DepthToSpace(DCR)", "Reshape/Transpose", "Transpose", "two-stage Transpose", "none")


@dataclass(frozen=True)
class Emission:
    """A concrete emission for one node."""

    strategy: str  # one of FIXED
    order: str  # plan channel order: "CRD", "DCR" or "LCR"
    fold_crop: object  # False, True (where free) or "always" (see deconv2sub.plan.make_plan)
    reason: str = ""


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
    if name == "two_stage":
        return Emission("two_stage", "LCR" if group == 1 else "CRD", True, reason)
    if name == "per_phase":
        return Emission("per_phase", "CRD", "always", reason)
    raise ValueError(f"unknown strategy {name!r} (choose from: {', '.join(STRATEGIES)})")


def plan_for(material, order: str, fold_crop, bias: bool = True):
    """``make_plan`` for the node of ``material``, memoised on it (the choice and the emission of a node
    need the same plans; planning copies the weight, so big models should not plan twice)."""
    from . import rewrite  # its make_plan: the planner the pass uses (tests plant faults there)

    cache = material.__dict__.setdefault("_plans", {})
    key = (order, fold_crop, bias)
    if key not in cache:
        cache[key] = rewrite.make_plan(material.weight, material.bias if bias else None, material.attrs,
                                       material.in_spatial, order, fold_crop)
    return cache[key]


def split_for(plan):
    """:func:`deconv2sub.perphase.phase_split` of ``plan``, memoised on it."""
    from .perphase import phase_split

    if "_split" not in plan.__dict__:
        plan.__dict__["_split"] = phase_split(plan)
    return plan.__dict__["_split"]


PER_PHASE_MAX_CONVS = 4  # more: many small Convs + a Concat cost more than they save (3-D k3 s2: 8)


def choose_default(*, group: int, rank: int, strides, opset: int, material=None) -> Emission:
    """The fixed choice of ``strategy="default"``, from the measurements of benchmarks/bench_blocks.py
    (ONNX Runtime and OpenVINO CPU):

    * ``per_phase`` when at most 4 phase Convs do and either the shared kernel has zero taps (kernel
      not a multiple of the stride, ENet's k3 s2: 9 of 16; +25-40 % on both runtimes) or, in 2-D/3-D,
      a crop that they fold away (DCGAN's k4 s2 p1, FCN's k16 s8 p4: +5-40 % on OpenVINO, whose Slice
      is a reference kernel, within -7..+3 % on ONNX Runtime);
    * ``two_stage`` otherwise (and for quantized weights). For 1-D crops (HiFi-GAN k4 s2 p1) phase Convs
      measured ~10 % slower on ONNX Runtime and ~8 % faster on OpenVINO; ``strategy="auto"`` picks per
      runtime.
    """
    reason = "default: two-stage transpose"
    if material is not None and material.emit_inputs is None and opset >= 5:
        from .perphase import macs_ratio
        from .plan import PlanError

        try:
            single = plan_for(material, "CRD", True)
            split = split_for(plan_for(material, "CRD", "always")) if single.phases > 1 else None
        except (PlanError, ValueError):
            single = split = None
        if split is not None and 1 < len(split.convs) <= PER_PHASE_MAX_CONVS:
            ratio = macs_ratio(single)
            if ratio < 1.0:
                return fixed("per_phase", group=group, rank=rank, strides=strides, opset=opset,
                             reason=f"default: {len(split.convs)} phase Convs ({ratio:.0%} of the shared "
                                    f"kernel's taps)")
            if single.needs_crop and rank >= 2:
                return fixed("per_phase", group=group, rank=rank, strides=strides, opset=opset,
                             reason=f"default: {len(split.convs)} phase Convs (the crop folded away)")
            if single.needs_crop:
                reason += " (1-D: phase Convs that only save the crop measured slower on ONNX Runtime)"
        elif split is not None and len(split.convs) > PER_PHASE_MAX_CONVS:
            reason += f" ({len(split.convs)} phase Convs would be too many)"
    return fixed("two_stage", group=group, rank=rank, strides=strides, opset=opset, reason=reason)


def select(material, opset: int, options) -> Emission:
    """The Emission for one node (``material`` from :func:`deconv2sub.rewrite.check`)."""
    attrs = material.attrs
    rank = material.weight.ndim - 2
    strides = list(attrs.strides or [1] * rank)
    name = options.strategy
    if name == "default" and (options.shuffle != "auto" or options.order != "auto"):
        name = "depth_to_space"  # the DepthToSpace knobs were set explicitly: they ask for that emission
    if name == "default":
        return choose_default(group=attrs.group, rank=rank, strides=strides, opset=opset, material=material)
    if name == "auto":
        from .autotune import tune

        return tune(material, opset, options)
    if name not in FIXED:
        raise ValueError(f"unknown strategy {name!r} (choose from: {', '.join(STRATEGIES)})")
    return fixed(name, group=attrs.group, rank=rank, strides=strides, opset=opset, order=options.order,
                 reason=f"fixed strategy '{name}'")
