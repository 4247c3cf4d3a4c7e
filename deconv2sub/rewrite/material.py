"""What the pass knows about one ConvTranspose it may rewrite: :class:`NodeMaterial`.

Built by :func:`deconv2sub.rewrite.match.check` and read by the chooser
(:mod:`deconv2sub.targets.chooser`), the emissions (:mod:`deconv2sub.rewrite.emissions`) and
the auto-tuner. It also carries the planner (:func:`deconv2sub.plan.subpixel.make_plan` unless one
is passed into the pass, e.g. by a test that plants a fault) and memoises the plans, since the
choice and the emission of a node need the same plans and planning copies the weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..plan.subpixel import ConvTransposeAttrs, PlanError, SubPixelPlan, make_plan, resolve_pads

__all__ = ["NodeMaterial", "Planner"]

# (weight, bias, attrs, input spatial sizes, order, fold_crop) -> plan; see plan.subpixel.make_plan
Planner = Callable[..., SubPixelPlan]


@dataclass
class NodeMaterial:
    """The weight, bias, attributes and sizes of one ConvTranspose, ready to plan."""

    weight: np.ndarray
    bias: Optional[np.ndarray]
    attrs: ConvTransposeAttrs
    in_spatial: Optional[List[Optional[int]]]
    batch: Optional[int] = None  # the input's batch size when it is known
    # Where the weight/bias came from (see match.check): notes for the report, producer nodes that
    # may be dead after the rewrite, and for quantized (QDQ) weights the emission of their
    # DequantizeLinear.
    notes: List[str] = field(default_factory=list)
    sources: list = field(default_factory=list)
    dtype: Optional[np.dtype] = None  # element type of the Conv output when it is not plan.weight's
    emit_inputs: Optional[Callable] = None  # (emitter, plan) -> [weight tensor, bias tensor?]
    after: Optional[Callable] = (
        None  # (graph, unique, base) -> names of nodes added after the rewrite
    )
    consumers: Tuple[
        str, ...
    ] = ()  # op types reading the node's output (the default rule looks for BN)
    # The input's sizes at the user's --input-shape (ConvertOptions.input_shapes): where
    # ``in_spatial`` / ``batch`` are known these equal them, else only speed decisions may use them
    # (nothing is baked from them).
    size_hint: Optional[List[Optional[int]]] = None
    batch_hint: Optional[int] = None
    planner: Planner = make_plan
    plans: Dict[tuple, SubPixelPlan] = field(default_factory=dict, repr=False)
    planned_attrs: Optional[ConvTransposeAttrs] = field(default=None, repr=False)

    @property
    def rank(self) -> int:
        """The number of spatial axes."""
        return self.weight.ndim - 2

    def sizes(self) -> Tuple[Optional[int], Optional[List[Optional[int]]]]:
        """(batch, spatial sizes) to decide speed by: what the model fixes, else the size hint."""
        spatial = self.in_spatial
        if self.size_hint is not None and (spatial is None or None in spatial):
            declared = spatial or [None] * len(self.size_hint)
            spatial = [h if v is None else v for v, h in zip(declared, self.size_hint)]
        return (self.batch if self.batch is not None else self.batch_hint), spatial

    def needs_runtime_crop(self) -> bool:
        """Whether the crop is computed at run time.

        Whether the node's crop is computed at run time: ``output_shape`` with a symbolic input
        size (its pads depend on the run-time size, see
        :func:`deconv2sub.rewrite.shuffle.emit_runtime_crop`).
        """
        return bool(self.attrs.output_shape) and (
            self.in_spatial is None or any(v is None for v in self.in_spatial)
        )

    def plan(self, order: str, fold_crop, bias: bool = True) -> SubPixelPlan:
        """The planner's plan of this node (with :meth:`effective_attrs`), memoised."""
        key = (order, fold_crop, bias)
        if key not in self.plans:
            self.plans[key] = self.planner(
                self.weight,
                self.bias if bias else None,
                self.effective_attrs(),
                self.in_spatial,
                order,
                fold_crop,
            )
        return self.plans[key]

    def effective_attrs(self) -> ConvTransposeAttrs:
        """The attributes to plan with.

        On an axis whose input size is known to be 1 the stride changes nothing (the output is
        ``s*(I - 1) + op + d*(K - 1) + 1 - pads``, and ``I - 1 = 0``), so it becomes
        ``d*(K - 1) + 1 + op``: every phase then has at most one tap, and the Conv is 1x1 with the
        original's MACs instead of a k x k Conv over a zero-padded input (the latent projection of
        DCGAN-style generators: k4 s1 on 1x1 would cost 16x). Pads are resolved first (``auto_pad``,
        ``output_shape``) with the original stride; memoised.
        """
        if self.planned_attrs is None:
            self.planned_attrs = _one_position_attrs(
                self.attrs, list(self.weight.shape[2:]), self.in_spatial
            )
        return self.planned_attrs


def _one_position_attrs(attrs: ConvTransposeAttrs, kernel: list, spatial) -> ConvTransposeAttrs:
    """``attrs`` with the stride of every axis of input size 1 widened (see effective_attrs)."""
    rank = len(kernel)
    strides = [int(v) for v in (attrs.strides or [1] * rank)]
    dil = [int(v) for v in (attrs.dilations or [1] * rank)]
    opad = [int(v) for v in (attrs.output_padding or [0] * rank)]
    wanted = list(strides)
    if (
        spatial is not None
        and len(spatial) == rank
        and len(strides) == rank
        and len(dil) == rank
        and len(opad) == rank
    ):
        for a in range(rank):
            if spatial[a] == 1:
                wanted[a] = max(strides[a], dil[a] * (kernel[a] - 1) + 1 + opad[a])
    if wanted == strides:
        return attrs
    try:
        begins, ends = resolve_pads(attrs, kernel, spatial)
    except PlanError:
        return attrs
    if min(begins + ends, default=0) < 0:
        return attrs
    return dc_replace(
        attrs, strides=wanted, pads=list(begins) + list(ends), auto_pad="NOTSET", output_shape=None
    )
