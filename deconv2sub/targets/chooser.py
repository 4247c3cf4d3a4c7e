"""The chooser: which emission each ConvTranspose gets, following fallbacks itself.

Every emission (:mod:`deconv2sub.rewrite.emissions`, one file each) is exact; they differ in speed,
which depends on the runtime, and in the ops a target supports. ``ConvertOptions.strategy`` says how
the choice is made:

* a fixed name (one of :data:`FIXED`, the registry's names): that emission for every node, with the
  order and crop folding it declares (:func:`fixed`);
* ``"default"``: the target profile's rule (``ConvertOptions.target``): "portable" profiles get
  :func:`choose_portable` (DepthToSpace within the target's limits, Conv3d + one rank-4
  Reshape/Transpose + DepthToSpace for 3-D, else the low-rank block-swap cascade); the
  "onnxruntime" and "openvino" rules are the tables of rows :data:`DEFAULT_RULES`, evaluated by
  :func:`choose_default` (measured with benchmarks/bench_blocks.py; the measurements behind each
  row are in benchmarks/README.md);
* ``"auto"``: measured per node on a runtime (:mod:`deconv2sub.targets.autotune`), cached.

:func:`choose` then asks the chosen emission whether it ``applies``; when it refuses, its declared
``fallback`` is taken (the reason says so), so the pass never re-decides. A node that cannot be
emitted at all gets a :class:`deconv2sub.rewrite.refusal.Refusal`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

from ..plan.blocks import block_factors
from ..plan.layout import gather_shuffle_ok
from ..plan.phases import macs_ratio, split_of
from ..plan.subpixel import PlanError
from ..rewrite.emissions import registry
from ..rewrite.emissions.base import Choice
from ..rewrite.emissions.depth_to_space_3d import depth_to_space_3d_refusal
from ..rewrite.emissions.pointwise_gemm import gemm_applies
from ..rewrite.material import NodeMaterial
from ..rewrite.options import ConvertOptions
from ..rewrite.refusal import Refusal
from . import resolve as resolve_target
from .bugs import conv_kernel2_wide
from .profile import NODE_FACTS, TargetProfile

__all__ = [
    "DEFAULT_RULES",
    "FIXED",
    "STRATEGIES",
    "Choice",
    "RuleRow",
    "choose",
    "choose_default",
    "choose_portable",
    "fixed",
]

FIXED = registry.NAMES
STRATEGIES = ("default", "auto") + FIXED  # the --strategy choices

PER_PHASE_MAX_CONVS = 4  # more: many small Convs + a Concat cost more than they save (3-D k3 s2: 8)

# A chooser for "auto": (material, opset, options) -> Choice; see deconv2sub.targets.autotune.tune
Measurer = Callable[[NodeMaterial, int, ConvertOptions], Choice]


def fixed(name: str, *, group: int, opset: int, order: str = "auto", reason: str = "") -> Choice:
    """The Choice of a fixed emission.

    The Choice of fixed emission ``name`` for a node with ``group`` groups. Before opset 5 (no
    Reshape with a shape input) every name becomes ``depth_to_space``.
    """
    if name not in registry.EMISSIONS:
        raise ValueError(f"unknown strategy {name!r} (choose from: {', '.join(STRATEGIES)})")
    if opset < 5:
        name = "depth_to_space"
    return registry.get(name).choice(group=group, opset=opset, order=order, reason=reason)


@dataclass(frozen=True)
class RuleRow:
    """One row of a default rule.

    One row of a default rule: when fact ``when`` holds, emit ``emission`` with ``reason``
    (formatted with the facts). A row without an emission is a note: it adds ``reason`` to the
    reason of the rule's last row (the one that holds ``"always"``) when that row is reached.
    """

    when: str
    emission: Optional[str]
    reason: str


_PHASES = "default: {convs} phase Convs"
DEFAULT_RULES: Dict[str, Tuple[RuleRow, ...]] = {
    "onnxruntime": (
        RuleRow(
            "phase_convs_save_taps",
            "per_phase",
            _PHASES + " ({ratio:.0%} of the shared kernel's taps)",
        ),
        RuleRow(
            "phase_convs_fold_crop_with_gather",
            "per_phase",
            _PHASES + " (the crop folded away) + transpose + row Gather",
        ),
        RuleRow(
            "phase_convs_fold_crop",
            None,
            " (phase Convs that only save the crop measured slower on ONNX Runtime when their "
            "shuffle needs more than one 2-D Transpose and a Gather)",
        ),
        RuleRow("too_many_phase_convs", None, " ({convs} phase Convs would be too many)"),
        # No Gemm row: pointwise_gemm (Flatten + Gemm + transpose + row Gather for a 1x1 kernel)
        # measured 0.51x on U-Net k2 s2 128>64 64x64 (ORT 1.31 CPU, 2 threads, quiet machine)
        # where the Conv + transpose + row Gather below gave 0.86x; the emission stays as a
        # fixed strategy.
        RuleRow(
            "always",
            "transpose_gather",
            "default: transpose + row Gather (two-stage transpose where the Gather does not apply)",
        ),
    ),
    "openvino": (
        RuleRow(
            "phase_convs_save_taps",
            "per_phase_channels_last",
            _PHASES
            + " ({ratio:.0%} of the shared kernel's taps), channels-last shuffle (OpenVINO)",
        ),
        RuleRow(
            "phase_convs_fold_crop",
            "per_phase_channels_last",
            _PHASES + " (the crop folded away), channels-last shuffle (OpenVINO)",
        ),
        RuleRow("too_many_phase_convs", None, " ({convs} phase Convs would be too many)"),
        RuleRow("always", "channels_last", "default: channels-last transpose (OpenVINO)"),
    ),
}
TARGETS = tuple(DEFAULT_RULES)


class _Facts:
    """What the default rules ask about one node, computed on first use."""

    def __init__(self, material: NodeMaterial, opset: int):
        self.material, self.opset = material, opset
        self.single = self.split = self.split_plan = None
        self.values = {"convs": 0, "ratio": 1.0}
        self.float = material.emit_inputs is None and opset >= 5
        if not self.float:
            return
        try:
            self.single = material.plan("CRD", True)
            self.split_plan = material.plan("CRD", "always")
            self.split = split_of(self.split_plan) if self.single.phases > 1 else None
        except (PlanError, ValueError):
            self.single = self.split = None
        if self.split is not None:
            self.values["convs"] = len(self.split.convs)
            if self.few_phase_convs():
                self.values["ratio"] = macs_ratio(self.single)

    def few_phase_convs(self) -> bool:
        return self.split is not None and 1 < len(self.split.convs) <= PER_PHASE_MAX_CONVS

    def holds(self, when: str) -> bool:
        """Whether fact ``when`` holds (see DEFAULT_RULES)."""
        few, saves = self.few_phase_convs(), self.values["ratio"] < 1.0
        if when == "always":
            return True
        if when == "phase_convs_save_taps":
            return few and saves
        if when == "phase_convs_fold_crop":
            return few and not saves and self.single.needs_crop
        if when == "phase_convs_fold_crop_with_gather":
            m = self.material
            return self.holds("phase_convs_fold_crop") and gather_shuffle_ok(
                self.split_plan, m.in_spatial, self.split, m.batch
            )
        if when == "too_many_phase_convs":
            return self.split is not None and len(self.split.convs) > PER_PHASE_MAX_CONVS
        if when in ("gemm", "gemm_before_batch_norm"):
            if not (
                self.float and self.single is not None and gemm_applies(self.material, self.opset)
            ):
                return False
            return ("BatchNormalization" in self.material.consumers) == (
                when == "gemm_before_batch_norm"
            )
        raise ValueError(f"unknown fact {when!r} in a default rule")


def choose_default(material: NodeMaterial, opset: int, target: str = "onnxruntime") -> Choice:
    """The choice of a measured default rule.

    The fixed choice of ``strategy="default"`` for the ``target`` runtime's rule: the first row of
    :data:`DEFAULT_RULES` whose fact holds (see :class:`RuleRow`).
    """
    if target not in DEFAULT_RULES:
        raise ValueError(f"unknown target {target!r} (choose from: {', '.join(TARGETS)})")
    facts = _Facts(material, opset)
    notes = ""
    for row in DEFAULT_RULES[target]:
        if not facts.holds(row.when):
            continue
        text = row.reason.format(**facts.values)
        if row.emission is None:
            notes += text
        else:
            reason = text + notes if row.when == "always" else text
            return fixed(row.emission, group=material.attrs.group, opset=opset, reason=reason)
    raise ValueError(f"the default rule of {target!r} has no 'always' row")


def _runtime_crop_refusal(
    material: NodeMaterial, opset: int, options: ConvertOptions
) -> Optional[Refusal]:
    """Refuse a run-time crop the target or the opset cannot have.

    The node needs a run-time crop (``output_shape`` with a symbolic input size: its pads depend
    on the run-time size) that the target or the opset cannot have.
    """
    if not material.needs_runtime_crop():
        return None
    what = (
        "output_shape with a symbolic input spatial size needs a run-time crop (its pads "
        "depend on the run-time size)"
    )
    if not options.dynamic_shapes or not resolve_target(options.target).dynamic_shapes:
        return Refusal(f"{what}, and the target does not allow dynamic shapes", "runtime_crop")
    if opset < 10:
        return Refusal(
            f"{what}, which needs Slice with run-time starts (opset >= 10); the model "
            f"has opset {opset}",
            "runtime_crop",
        )
    return None


def choose_profile_default(
    material: NodeMaterial, opset: int, profile: TargetProfile
) -> Union[Choice, Refusal]:
    """The choice of ``profile``'s own default rule (the portable rule, or a measured one)."""
    if profile.rule == "portable":
        return choose_portable(material, opset, profile)
    if material.needs_runtime_crop():
        # The smallest graph: one Conv, DepthToSpace (or one Reshape/Transpose), the run-time Slice.
        return fixed(
            "depth_to_space",
            group=material.attrs.group,
            opset=opset,
            reason="default: DepthToSpace/Reshape shuffle (crop computed at run time: "
            "output_shape with a symbolic input size)",
        )
    return choose_default(material, opset, target=profile.rule)


def _pick(
    material: NodeMaterial, opset: int, options: ConvertOptions, measure: Optional[Measurer]
) -> Union[Choice, Refusal]:
    """The first choice for the node, before the emission is asked whether it applies."""
    group = material.attrs.group
    name = options.strategy
    if name == "default" and (options.shuffle != "auto" or options.order != "auto"):
        # The DepthToSpace knobs were set explicitly: they ask for that emission.
        name = "depth_to_space"
    if name in ("default", "auto"):  # the target decides; first, whether it keeps the node
        profile = resolve_target(options.target)
        kept = keep_reason(material, profile)
        if kept:
            return Refusal(kept, "target_keeps")
    if name == "default":
        return choose_profile_default(material, opset, profile)
    if name == "auto":
        if measure is None:
            raise ValueError(
                "strategy 'auto' measures the candidates: pass measure= (see "
                "deconv2sub.targets.autotune.measurer; deconv2sub.convert_model does)"
            )
        return measure(material, opset, options)
    return fixed(
        name, group=group, opset=opset, order=options.order, reason=f"fixed strategy '{name}'"
    )


def _holds_fact(fact: str, material: NodeMaterial, profile: TargetProfile,
                fold_crop=None) -> bool:
    """Whether ``material``'s node has ``fact`` (a name of :data:`.profile.NODE_FACTS`).

    ``fold_crop``: plan with this instead of the profile's ``fold_crop`` (for facts of the Conv).
    """
    if fact == "grouped":
        return material.attrs.group > 1
    if fact == "kernel2_wide":
        if material.rank != 2:
            return False
        try:
            plan = material.plan("CRD", profile.fold_crop if fold_crop is None else fold_crop)
        except (PlanError, ValueError):
            return False
        _, spatial = material.sizes()
        spatial = spatial or [None, None]
        padded = [
            None if v is None else v + a.conv_pad_begin + a.conv_pad_end
            for v, a in zip(spatial, plan.axes)
        ]
        return conv_kernel2_wide([a.taps for a in plan.axes], plan.in_channels, padded)
    raise ValueError(f"unknown keep_when fact {fact!r}")


def keep_reason(material: NodeMaterial, profile: TargetProfile) -> Optional[str]:
    """Why ``profile`` keeps this ConvTranspose, or None.

    By its strides or rank (:meth:`TargetProfile.keeps`), or by one of its ``keep_when`` facts.
    """
    kept = profile.keeps(material.attrs.strides or [1] * material.rank)
    if kept:
        return kept
    for fact in profile.keep_when:
        if _holds_fact(fact, material, profile):
            return f"target '{profile.name}' keeps ConvTranspose: {NODE_FACTS[fact]}"
    return None


def choose(
    material: NodeMaterial, opset: int, options: ConvertOptions, measure: Optional[Measurer] = None
) -> Union[Choice, Refusal]:
    """The Choice for one node, or the Refusal that leaves it alone.

    The first choice (fixed, the target's default rule, or measured by ``measure`` for "auto",
    see :func:`deconv2sub.targets.autotune.measurer`) is checked with its emission's ``applies``; a
    refused emission's ``fallback`` is taken in its place, with the refusal in the reason. Raises
    PlanError when the node cannot be planned.
    """
    refusal = _runtime_crop_refusal(material, opset, options)
    if refusal is not None:
        return refusal
    choice = _pick(material, opset, options, measure)
    seen = set()
    while isinstance(choice, Choice) and choice.strategy not in seen:
        seen.add(choice.strategy)
        emission = registry.get(choice.strategy)
        refusal = emission.applies(material, choice, opset, options)
        if refusal is None:
            return choice
        if emission.fallback is None:
            return refusal
        declined = choice.declined + ((emission.name, refusal.code),)
        choice = fixed(
            emission.fallback,
            group=material.attrs.group,
            opset=opset,
            reason=f"{choice.reason}; {refusal.reason}: {emission.fallback}",
        )
        choice = dataclasses.replace(choice, declined=declined)
    return choice


def choose_portable(
    material: NodeMaterial, opset: int, profile: TargetProfile
) -> Union[Choice, Refusal]:
    """The choice of the portable rule.

    The emission of a profile with the "portable" rule: one Conv + DepthToSpace where the target's
    DepthToSpace can express the shuffle (2-D, equal strides; a cascade of smaller blocks above
    ``max_block``; the first of the profile's modes that the opset and the groups allow); for 3-D
    with ``s1 == s2``, Conv3d + one rank-4 Reshape/Transpose + DepthToSpace(CRD)
    (``depth_to_space_3d``); else the block-swap cascade of Reshape/Transpose of at most
    ``max_rank`` axes; the crop folded where free. The reason names the profile and every form it
    refused, with why.
    """
    attrs = material.effective_attrs()
    rank = material.weight.ndim - 2
    strides = [int(v) for v in (attrs.strides or [1] * rank)]
    fold = profile.fold_crop
    label = f"target {profile.name}"
    refused = []
    if all(v == 1 for v in strides):
        return Choice("depth_to_space", "CRD", fold, f"{label}: stride 1, no shuffle")
    facts = _Facts(material, opset) if (profile.phase_convs and profile.gather) else None
    if facts is not None and facts.holds("phase_convs_fold_crop_with_gather"):
        # Phase Convs that fold the crop away, shuffled by one 2-D Transpose + a row Gather
        # (DCGAN's k4 s2 p1); a profile that allows both (iree) measured them faster there.
        return fixed("per_phase", group=attrs.group, opset=opset,
                     reason=f"{label}: {facts.values['convs']} phase Convs (the crop folded away) "
                     "+ transpose + row Gather")
    if rank == 3:
        why = _depth_to_space_3d_refusal(material, opset, profile)
        if why is None:
            return Choice("depth_to_space_3d", "DCR", fold,
                          f"{label}: Conv3d + Reshape/Transpose (rank 4) + DepthToSpace(CRD)")
        refused.append(why)
    elif rank != 2 or strides[0] != strides[1]:
        refused.append("DepthToSpace: 4-D with one block size only")
    elif not profile.depth_to_space:
        refused.append("DepthToSpace: the target has none")
    else:
        choice = _portable_depth_to_space(material, opset, profile, strides[0], refused)
        if choice is not None:
            return choice
    if opset < 5:
        return Refusal(
            f"opset {opset} has no Reshape with a shape input (needs >= 5); " + "; ".join(refused),
            "opset",
        )
    return Choice(
        "low_rank_transpose",
        "CRD",
        fold,
        f"{label}: Reshape/Transpose of rank <= {profile.max_rank}" + _refusals(refused),
        max_rank=profile.max_rank,
    )


def _fold_crop_for(material: NodeMaterial, profile: TargetProfile) -> Tuple[object, str]:
    """(fold_crop for this node, a note for the reason): ``"always"`` by ``fold_crop_always_when``.

    A fact of the profile's ``fold_crop_always_when`` that holds, and no longer holds once the
    crop is folded into the kernel, folds it there even where the kernel grows (DCGAN's k4 s2 p1:
    a 3x3 Conv instead of a 2x2 one + Slice); where folding leaves the fact true (ENet's k3 s2 p1
    op1 stays 2x2) nothing changes.
    """
    if profile.fold_crop == "always":
        return "always", ""
    for fact in profile.fold_crop_always_when:
        if _holds_fact(fact, material, profile) and not _holds_fact(
                fact, material, profile, fold_crop="always"):
            return "always", f", crop folded into the kernel ({NODE_FACTS[fact]})"
    return profile.fold_crop, ""


def _portable_depth_to_space(
    material: NodeMaterial, opset: int, profile: TargetProfile, stride: int, refused: list
) -> Optional[Choice]:
    """The portable rule's 2-D DepthToSpace (a cascade above ``max_block``), or None.

    None when no mode of the profile can write it; each refused form is appended to ``refused``.
    """
    group, label = material.attrs.group, f"target {profile.name}"
    blocks = block_factors(stride, profile.max_block)
    if blocks is None:
        refused.append(f"DepthToSpace: stride {stride} is no product of blocks <= "
                       f"{profile.max_block}")
        return None
    for mode in profile.depth_to_space:
        if mode == "CRD" and opset < 11:
            refused.append("DepthToSpace(CRD): needs opset >= 11")
            continue
        if mode == "DCR" and group != 1:
            refused.append("DepthToSpace(DCR): would split the groups of the grouped Conv")
            continue
        if len(blocks) > 1 and material.emit_inputs is not None:
            refused.append(f"DepthToSpace({mode}) cascade: would reorder a quantized weight")
            continue
        cascade = "" if len(blocks) == 1 else " cascade " + "x".join(str(b) for b in blocks)
        fold, grown = _fold_crop_for(material, profile)
        return Choice(
            "depth_to_space",
            "DCR" if (mode == "DCR" and len(blocks) == 1) else "CRD",
            fold,
            f"{label}: Conv + DepthToSpace({mode}){cascade}{grown}" + _refusals(refused),
            blocks=tuple(blocks),
            modes=(mode,) * len(blocks),
        )
    return None


def _depth_to_space_3d_refusal(
    material: NodeMaterial, opset: int, profile: TargetProfile
) -> Optional[str]:
    """Why the portable rule does not take ``depth_to_space_3d`` for this 3-D node, or None."""
    what = "Conv3d + DepthToSpace(CRD)"
    if not profile.depth_to_space_3d:
        return f"{what}: off for the target (depth_to_space_3d = false)"
    if "CRD" not in profile.depth_to_space:
        return f"{what}: the target has no DepthToSpace CRD"
    if profile.max_rank < 4:
        return f"{what}: needs Reshape/Transpose of rank 4 (max_rank {profile.max_rank})"
    refusal = depth_to_space_3d_refusal(material, opset, profile.dynamic_shapes)
    if refusal is not None:
        return refusal.reason
    block = int((material.effective_attrs().strides or [1, 1, 1])[1])
    if profile.max_block and block > profile.max_block:
        return f"{what}: block {block} > max_block {profile.max_block}"
    return None


def _refusals(refused) -> str:
    """The refused forms, as a parenthesis for the reason."""
    return "" if not refused else " (refused: " + "; ".join(refused) + ")"
