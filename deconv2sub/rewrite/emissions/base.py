"""The emission protocol and what the emissions share.

:class:`Choice` is what the chooser (:mod:`deconv2sub.targets.chooser`) decides for one node: the
emission's name, the plan's channel order and crop folding, the reason, and the emission's own
parameters. :class:`Emission` is the base class each emission derives from: ``choice`` builds its
fixed Choice, ``applies`` returns a :class:`deconv2sub.rewrite.refusal.Refusal` when it cannot emit
the node (the chooser then follows ``fallback``, or declines the node), ``emit`` writes the nodes
and returns :class:`Emitted`. :func:`emit_chain` is the Conv -> shuffle -> crop sequence every
emission writes, :func:`emit_conv` the single Conv most of them use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import onnx_graphsurgeon as gs

from ...plan.phases import PhaseSplit
from ...plan.subpixel import SubPixelPlan
from ..material import NodeMaterial
from ..options import ConvertOptions
from ..refusal import Refusal
from ..shuffle import Emitter, emit_crop, emit_runtime_crop

__all__ = ["Choice", "EmitRequest", "Emitted", "Emission", "emit_chain", "emit_conv", "plan_of"]


@dataclass(frozen=True)
class Choice:
    """The emission chosen for one node."""

    strategy: str  # the emission's name (a key of the registry)
    order: str  # plan channel order: "CRD", "DCR" or "LCR"
    # False, True (where free) or "always" (see deconv2sub.plan.subpixel.make_plan)
    fold_crop: object
    reason: str = ""
    # "depth_to_space" chosen by a target profile: the DepthToSpace cascade (block sizes and modes,
    # e.g. (4, 2) and ("CRD", "CRD") for stride 8 with at most 4 per block); empty: the classic
    # emission
    blocks: tuple = ()
    modes: tuple = ()
    # "low_rank_transpose": the largest Transpose rank allowed
    max_rank: int = 4
    # emissions declined on the way to this one, as data: ((emission, refusal code), ...), e.g.
    # (("per_phase", "per_phase_empty_phase"),) or, for "auto", (("transpose_gather",
    # "outside_target"),)
    declined: tuple = ()


@dataclass
class EmitRequest:
    """Everything an emission needs to write one node."""

    node: gs.Node
    material: NodeMaterial
    choice: Choice
    plan: SubPixelPlan  # the choice's plan (see plan_of)
    em: Emitter
    opset: int
    options: ConvertOptions


@dataclass
class Emitted:
    """What an emission wrote, for the sinking and the report."""

    plan: SubPixelPlan  # the plan emitted (a DepthToSpace cascade reorders its rows)
    kind: str  # the shuffle, as reported ("Transpose + row Gather", "DepthToSpace(CRD)", ...)
    conv_node: gs.Node  # the node that writes conv_out (Conv, Gemm, or the phase Convs' Concat)
    conv_out: gs.Variable
    crop: Optional[list] = None  # per axis [begin, end] sliced off, None without a Slice
    # channel layout of conv_out when it is not plan.row_layout()
    rows_layout: Optional[list] = None
    split: Optional[PhaseSplit] = None  # the phase-group Convs, if any
    row_order: Optional[np.ndarray] = None  # Conv row r holds CRD row row_order[r]
    matrix: bool = False  # the Conv is a Gemm on [C, L]
    note: str = ""  # appended to the choice's reason


class Emission:
    """One way of writing a ConvTranspose (see the module docstring); subclass it.

    A subclass sets ``name`` and writes :meth:`emit`; the defaults below give the rest: a Choice
    with the class's ``order`` (an "LCR" order becomes "CRD" with groups) and ``fold_crop``, an
    emission that applies to every node, and no fallback. Override :meth:`order_for`,
    :meth:`choice` or :meth:`applies` only where an emission differs.
    """

    #: the emission's name (its key in the registry, the ``--strategy`` value)
    name: str = ""
    #: what the chooser takes when :meth:`applies` refuses; None: the node stays
    fallback: Optional[str] = None
    #: the plan's channel order: "CRD", "DCR" or "LCR" (the lead axis' phase first)
    order: str = "CRD"
    #: crop folding: False, True (where free) or "always" (see deconv2sub.plan.subpixel.make_plan)
    fold_crop: object = True

    def order_for(self, *, group: int, opset: int, order: str = "auto") -> str:
        """The channel order of the Choice: ``self.order``, "CRD" for "LCR" with groups."""
        return "CRD" if self.order == "LCR" and group != 1 else self.order

    def choice(self, *, group: int, opset: int, order: str = "auto", reason: str = "") -> Choice:
        """The fixed Choice of this emission for a node with ``group`` groups."""
        return Choice(
            self.name, self.order_for(group=group, opset=opset, order=order), self.fold_crop, reason
        )

    def applies(
        self, material: NodeMaterial, choice: Choice, opset: int, options: ConvertOptions
    ) -> Optional[Refusal]:
        """None when the emission can write the node, else why not (default: always None)."""
        return None

    def emit(self, request: EmitRequest) -> Emitted:
        """Write the nodes into ``request.em`` (the pass splices them in)."""
        raise NotImplementedError(f"emission {self.name!r} does not define emit()")


def plan_of(material: NodeMaterial, choice: Choice, options: ConvertOptions) -> SubPixelPlan:
    """The plan of ``choice`` (no crop folding when the options say so), memoised."""
    return material.plan(choice.order, choice.fold_crop if options.fold_crop else False)


def conv_dtype(request: EmitRequest, plan: SubPixelPlan):
    """The element type of the Conv output."""
    return plan.weight.dtype if request.material.dtype is None else request.material.dtype


def emit_conv(em: Emitter, plan: SubPixelPlan, x, out, material: NodeMaterial) -> gs.Node:
    """Write the single sub-pixel Conv.

    The single sub-pixel Conv of ``plan`` from ``x`` into ``out`` (quantized weights through
    their DequantizeLinear nodes, see :mod:`deconv2sub.rewrite.match`).
    """
    if material.emit_inputs is not None:
        conv_inputs = [x, *material.emit_inputs(em, plan)]
    else:
        conv_inputs = [x, em.const("subpixel_weight", plan.weight)]
        if plan.bias is not None:
            conv_inputs.append(em.const("subpixel_bias", plan.bias))
    return em.node(
        "Conv",
        "subpixel_conv",
        conv_inputs,
        [out],
        {
            "kernel_shape": list(plan.conv_kernel),
            "strides": [1] * plan.rank,
            "dilations": plan.conv_dilations,
            "pads": plan.conv_pads,
            "group": plan.group,
        },
    )


def emit_chain(
    request: EmitRequest,
    plan: SubPixelPlan,
    kind: str,
    conv: Callable[[gs.Variable], gs.Node],
    shuffle: Callable[[gs.Variable, gs.Variable], None],
    crop_left: Optional[list] = None,
) -> tuple:
    """Write Conv -> shuffle -> crop.

    Conv -> shuffle -> crop from the node's input to its output; returns
    ``(conv node, conv output, crop)``.

    ``conv(out)`` writes the Conv(s) into ``out``; ``shuffle(x, y)`` the shuffle (skipped when
    ``kind`` is "none"); ``crop_left``: the crop still to slice when the shuffle did part of it
    (else the plan's). Intermediate tensors exist only where a later stage needs them.
    """
    em, x, y = request.em, request.node.inputs[0], request.node.outputs[0]
    dtype = conv_dtype(request, plan)
    needs_crop = (
        plan.needs_crop
        if crop_left is None
        else (any(any(c) for c in crop_left) or bool(plan.runtime_axes))
    )
    conv_out = y if not (kind != "none" or needs_crop) else em.var("subpixel_conv_out", dtype)
    conv_node = conv(conv_out)
    current = conv_out
    if kind != "none":
        shuffled = y if not needs_crop else em.var("subpixel_shuffled", dtype)
        shuffle(current, shuffled)
        current = shuffled
    crop = None
    if needs_crop and plan.runtime_axes:
        crop = emit_runtime_crop(em, plan, x, current, y, crop_left)
    elif needs_crop:
        crop = emit_crop(em, plan, current, y, crop_left)
    return conv_node, conv_out, crop
