"""Every registered emission over the ConvTranspose attribute space, against ONNX Runtime.

The emissions are read from :data:`deconv2sub.rewrite.emissions.registry.EMISSIONS` when the tests
are collected: a new emission is one file plus a registry entry, and it inherits every case below.
For each (emission, case) the one-node model is converted with ``ConvertOptions(strategy=name)``:

* applied: no ConvTranspose is left, the ops on the data path are those the emission writes
  (:data:`EMISSION_OPS`, or the union of all of them for an emission not listed there), and the
  output equals ONNX Runtime running the ORIGINAL model to float rounding, at every trial shape;
* declined: the node report is a refusal (``code`` and ``reason`` set), the node stays a
  ConvTranspose and the model computes exactly what it computed before; or the emission's
  ``fallback`` (followed through the registry) was applied instead, with the refusal in the reason.

:data:`CASES` spans 1-D/2-D/3-D, strides 1/2/3/8 and unequal strides, kernels that are not a
multiple of the stride, asymmetric pads, ``output_padding``, ``output_shape`` (shorter and longer
than the full output, with symbolic input sizes), every ``auto_pad``, dilations, groups (depthwise
included), opsets 9/11/13/17, batch > 1, symbolic dims, with and without bias. ``default`` (the
target profiles' rules) runs over the same table.
:func:`test_every_emission_applies_on_enough_cases` keeps the sweep meaningful: each emission must
itself write (not decline, not fall back) at least :data:`MIN_APPLIED` of the cases, and show its
signature op (:data:`SIGNATURE_OPS`) in some. An emission for one spatial rank only
(:data:`RANK_ONLY`: ``depth_to_space_3d``) must fall back on the other ranks' cases, and has enough
3-D cases of its own to reach :data:`MIN_APPLIED`.

The random sweeps (hypothesis): the default rules of the ``onnxruntime`` and ``openvino`` targets on
random configurations run by default (what ``tests/test_property.py`` held); every emission on
random configurations is ``slow``.
"""

from __future__ import annotations

import functools
import os
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import onnx
import pytest
from builders import convtranspose_model, op_types, run
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.rewrite.emissions import registry

NAMES = tuple(registry.EMISSIONS)
DEFAULT_TARGETS = ("portable", "onnxruntime", "openvino")
REL = 1e-5  # max abs error / max(|reference|, 1): float32 summation order only
MIN_APPLIED = 20

# The ops each emission writes on the data path (X -> Y); run-time shape arithmetic aside.
_MOVES = {"Reshape", "Transpose", "Slice"}
EMISSION_OPS: Dict[str, set] = {
    "depth_to_space": {"Conv", "DepthToSpace"} | _MOVES,
    "low_rank_transpose": {"Conv"} | _MOVES,
    "transpose": {"Conv"} | _MOVES,
    "two_stage": {"Conv"} | _MOVES,
    "transpose_gather": {"Conv", "Gather"} | _MOVES,
    "pointwise_gemm": {"Conv", "Gemm", "Gather"} | _MOVES,
    "per_phase": {"Conv", "Concat", "Identity", "Gather"} | _MOVES,
    "channels_last": {"Conv"} | _MOVES,
    "per_phase_channels_last": {"Conv", "Concat", "Identity"} | _MOVES,
    "depth_to_space_3d": {"Conv", "DepthToSpace"} | _MOVES,
}
ANY_EMISSION_OPS = set().union(*EMISSION_OPS.values())
# Ops that compute shapes at run time (symbolic sizes) rather than move data.
SHAPE_OPS = {
    "Shape", "Gather", "Mul", "Add", "Sub", "Div", "Max", "Less", "Where", "Concat", "Slice",
    "Unsqueeze", "Squeeze", "Cast", "Constant",
}
# The most Transposes an emission writes per node (low_rank_transpose: one per block swap).
MAX_TRANSPOSES = {
    "depth_to_space": 1, "transpose": 1, "two_stage": 2, "transpose_gather": 2,
    "pointwise_gemm": 2, "per_phase": 2, "channels_last": 2, "per_phase_channels_last": 2,
    "depth_to_space_3d": 1,
}
# The largest rank of each of its Transposes (low_rank_transpose: the Choice's max_rank, 4 for
# a fixed strategy and for the portable profile).
MAX_TRANSPOSE_RANK = {"low_rank_transpose": 4, "depth_to_space_3d": 4}
# The op that shows the emission's own form; each must appear in some of the cases.
SIGNATURE_OPS = {
    "depth_to_space": "DepthToSpace",
    "transpose_gather": "Gather",
    "pointwise_gemm": "Gemm",
    "per_phase": "Concat",
    "per_phase_channels_last": "Concat",
    "depth_to_space_3d": "DepthToSpace",
}
# Emissions for one spatial rank only: (rank, what they fall back to on the other ranks' cases).
RANK_ONLY = {"depth_to_space_3d": (3, "low_rank_transpose")}


@dataclass(frozen=True)
class Case:
    """One ConvTranspose node: input shape, weight shape, attributes, and what is expected."""

    id: str
    x: tuple  # input shape, str entries symbolic
    w: tuple  # weight shape (C, M/group, k...)
    attrs: tuple  # sorted (name, value) pairs
    opset: int = 17
    bias: bool = True
    trials: tuple = ()  # input shapes to verify at (symbolic inputs); default: x itself
    # name -> refusal code (the node stays) or the name of the emission it falls back to;
    # "*": every emission. An emission of EMISSION_OPS must apply itself where none is listed.
    expect: tuple = ()
    target: Optional[str] = None  # profile for the fixed emissions (default: portable)

    @property
    def attributes(self) -> dict:
        """The ConvTranspose attributes."""
        return dict(self.attrs)

    def expected(self, name: str) -> Optional[str]:
        """What ``name`` must do here: a refusal code, a fallback's name, or None (applies)."""
        table = dict(self.expect)
        if name not in table and "*" not in table and name in RANK_ONLY:
            rank, fallback = RANK_ONLY[name]
            return None if len(self.w) - 2 == rank else fallback
        return table.get(name, table.get("*"))

    def shapes(self) -> List[tuple]:
        """The concrete input shapes at which the output is compared."""
        return list(self.trials) or [tuple(self.x)]


def case(id, x, w, *, opset=17, bias=True, trials=(), expect=None, target=None, **attrs) -> Case:
    """A :class:`Case`; keyword arguments other than the fields are ConvTranspose attributes."""
    attrs = tuple(sorted((k, v) for k, v in attrs.items() if v is not None))
    expect = tuple(sorted((expect or {}).items()))
    return Case(id, tuple(x), tuple(w), attrs, opset, bias, tuple(trials), expect, target)


PHASE_WITHOUT_TAPS = {"per_phase": "two_stage", "per_phase_channels_last": "channels_last"}
# depth_to_space_3d declines (s1 != s2, groups, opset < 11): the block-swap cascade instead
D2S3D_FALLS_BACK = {"depth_to_space_3d": "low_rank_transpose"}

CASES: Tuple[Case, ...] = (
    # ---- 2-D
    case("2d_s1_k3_p1_batch2", [2, 3, 5, 6], (3, 4, 3, 3), strides=[1, 1], pads=[1, 1, 1, 1]),
    case("2d_s1_k1_nobias", [1, 3, 4, 4], (3, 2, 1, 1), bias=False),
    *(
        case(f"2d_k4s2p1_opset{o}", [1, 3, 5, 4], (3, 2, 4, 4), opset=o, strides=[2, 2],
             pads=[1, 1, 1, 1])
        for o in (9, 11, 13, 17)
    ),
    case("2d_k3s2p1op1_batch2", [2, 4, 6, 5], (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1],
         output_padding=[1, 1]),
    case("2d_k3s2_op1_opset9", [1, 3, 4, 4], (3, 2, 3, 3), opset=9, strides=[2, 2],
         pads=[1, 0, 0, 1], output_padding=[1, 0]),
    case("2d_k2s2_pointwise", [1, 6, 4, 5], (6, 3, 2, 2), strides=[2, 2]),
    case("2d_k2s2_pointwise_opset11_nobias", [1, 4, 3, 3], (4, 5, 2, 2), opset=11, bias=False,
         strides=[2, 2]),
    case("2d_k3s3_pointwise", [1, 2, 3, 4], (2, 2, 3, 3), strides=[3, 3]),
    case("2d_k1s2_kernel_lt_stride", [1, 3, 4, 5], (3, 2, 1, 1), strides=[2, 2],
         expect=PHASE_WITHOUT_TAPS),
    case("2d_k2s3_op2_kernel_lt_stride", [1, 2, 3, 4], (2, 2, 2, 2), strides=[3, 3],
         output_padding=[2, 1], expect=PHASE_WITHOUT_TAPS),
    case("2d_k5s3_pads_asym", [1, 2, 4, 5], (2, 3, 5, 5), strides=[3, 3], pads=[2, 1, 0, 3]),
    case("2d_k3s3_op2_pads_asym_opset13", [1, 2, 4, 3], (2, 2, 3, 3), opset=13, strides=[3, 3],
         pads=[1, 0, 0, 1], output_padding=[2, 2]),
    case("2d_k3x4_s2x3_unequal", [2, 3, 4, 5], (3, 2, 3, 4), strides=[2, 3], pads=[1, 0, 2, 1],
         output_padding=[1, 0]),
    case("2d_k3x4_s1x2_unequal_opset11", [1, 3, 4, 5], (3, 2, 3, 4), opset=11, strides=[1, 2],
         pads=[0, 1, 1, 1]),
    case("2d_k3s2_d2", [1, 3, 4, 5], (3, 2, 3, 3), strides=[2, 2], dilations=[2, 2],
         pads=[1, 1, 2, 2], output_padding=[1, 0], expect=PHASE_WITHOUT_TAPS),
    case("2d_k3s1_d2", [1, 3, 5, 5], (3, 2, 3, 3), strides=[1, 1], dilations=[2, 2],
         pads=[2, 2, 2, 2]),
    case("2d_k3s1x2_d2x1", [1, 2, 4, 4], (2, 2, 3, 3), strides=[1, 2], dilations=[2, 1],
         pads=[1, 1, 1, 1]),
    case("2d_k4s2p1_group2", [1, 4, 5, 4], (4, 3, 4, 4), strides=[2, 2], pads=[1, 1, 1, 1],
         group=2),
    case("2d_k3s2p1op1_depthwise_batch2", [2, 4, 5, 5], (4, 1, 3, 3), strides=[2, 2],
         pads=[1, 1, 1, 1], output_padding=[1, 1], group=4),
    case("2d_k3s3_group3", [1, 6, 3, 4], (6, 2, 3, 3), strides=[3, 3], pads=[0, 1, 1, 0],
         group=3),
    case("2d_k4s2_depthwise_opset9", [1, 3, 4, 4], (3, 1, 4, 4), opset=9, strides=[2, 2],
         pads=[1, 1, 1, 1], group=3),
    case("2d_same_upper_k3s2", [1, 3, 4, 5], (3, 2, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    case("2d_same_lower_k3s2", [1, 3, 4, 5], (3, 2, 3, 3), strides=[2, 2], auto_pad="SAME_LOWER"),
    case("2d_same_upper_k4s2_opset13", [2, 2, 3, 4], (2, 3, 4, 4), opset=13, strides=[2, 2],
         auto_pad="SAME_UPPER"),
    case("2d_same_lower_k5s3_op1", [1, 2, 3, 3], (2, 2, 5, 5), strides=[3, 3],
         output_padding=[1, 1], auto_pad="SAME_LOWER"),
    case("2d_valid_k3s2", [1, 3, 4, 5], (3, 2, 3, 3), strides=[2, 2], auto_pad="VALID"),
    case("2d_notset_k3s2_op1", [1, 2, 3, 3], (2, 2, 3, 3), strides=[2, 2], auto_pad="NOTSET",
         output_padding=[1, 1]),
    case("2d_output_shape", [1, 3, 5, 4], (3, 2, 3, 3), strides=[2, 2], output_shape=[10, 8]),
    case("2d_output_shape_same_upper", [1, 3, 5, 4], (3, 2, 3, 3), strides=[2, 2],
         output_shape=[10, 8], auto_pad="SAME_UPPER"),
    case("2d_output_shape_longer_than_full", [1, 2, 3, 3], (2, 2, 3, 3), strides=[3, 2],
         output_shape=[10, 8]),
    case("2d_output_shape_symbolic", [1, 3, "H", "W"], (3, 2, 3, 3), strides=[2, 2],
         output_shape=[9, 9], trials=[(1, 3, 4, 5), (1, 3, 5, 4)]),
    case("2d_output_shape_symbolic_opset9", [1, 3, "H", "W"], (3, 2, 3, 3), opset=9,
         strides=[2, 2], output_shape=[9, 9], trials=[(1, 3, 4, 4)],
         expect={"*": "runtime_crop"}),
    case("2d_symbolic_batch", ["N", 3, 5, 4], (3, 2, 4, 4), strides=[2, 2], pads=[1, 1, 1, 1],
         trials=[(1, 3, 5, 4), (3, 3, 5, 4)]),
    case("2d_symbolic_all", ["N", 3, "H", "W"], (3, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1],
         output_padding=[1, 1], trials=[(1, 3, 4, 5), (2, 3, 6, 3)]),
    case("2d_k16s8p4", [1, 2, 3, 3], (2, 2, 16, 16), strides=[8, 8], pads=[4, 4, 4, 4]),
    case("2d_latent_1x1_input", [2, 8, 1, 1], (8, 4, 4, 4), strides=[1, 1]),
    # ---- 1-D
    case("1d_k4s2p1_batch2", [2, 3, 7], (3, 2, 4), strides=[2], pads=[1, 1]),
    case("1d_k3s3_op1_pads_opset11", [1, 2, 5], (2, 3, 3), opset=11, strides=[3], pads=[0, 2],
         output_padding=[1]),
    case("1d_k5s2_d2_op1", [1, 3, 6], (3, 2, 5), strides=[2], dilations=[2], pads=[1, 2],
         output_padding=[1], expect=PHASE_WITHOUT_TAPS),
    case("1d_k3s2_depthwise", [1, 4, 6], (4, 1, 3), strides=[2], pads=[1, 0], group=4),
    case("1d_k4s3_same_upper", [1, 2, 5], (2, 2, 4), strides=[3], auto_pad="SAME_UPPER"),
    case("1d_output_shape_opset13", [1, 2, 5], (2, 3, 3), opset=13, strides=[2],
         output_shape=[10]),
    case("1d_symbolic_length", ["N", 3, "T"], (3, 2, 4), strides=[2], pads=[1, 1],
         trials=[(1, 3, 5), (2, 3, 8)]),
    case("1d_k3s2_op1_opset9", [1, 2, 4], (2, 2, 3), opset=9, strides=[2], output_padding=[1],
         bias=False),
    case("1d_k3s1", [1, 3, 6], (3, 2, 3), strides=[1], pads=[1, 1]),
    # ---- 3-D
    case("3d_k4s2p1", [1, 2, 3, 4, 3], (2, 2, 4, 4, 4), strides=[2, 2, 2],
         pads=[1, 1, 1, 1, 1, 1]),
    case("3d_k3_s1x2x2_unequal_batch2", [2, 2, 3, 3, 4], (2, 3, 3, 3, 3), strides=[1, 2, 2],
         pads=[1, 0, 1, 1, 1, 0], output_padding=[0, 1, 0]),
    case("3d_k3s2_group2_d2", [1, 4, 3, 3, 3], (4, 1, 3, 3, 3), strides=[2, 2, 2],
         dilations=[2, 1, 1], group=2, expect={**PHASE_WITHOUT_TAPS, **D2S3D_FALLS_BACK}),
    case("3d_same_lower_k3s2_opset13", [1, 2, 3, 2, 3], (2, 2, 3, 3, 3), opset=13,
         strides=[2, 2, 2], auto_pad="SAME_LOWER"),
    case("3d_output_shape", [1, 2, 2, 3, 3], (2, 2, 3, 3, 3), strides=[2, 2, 2],
         output_shape=[4, 6, 5]),
    case("3d_k2x1x3_s3x1x2_opset9", [1, 2, 2, 3, 3], (2, 2, 2, 1, 3), opset=9, strides=[3, 1, 2],
         pads=[0, 0, 1, 1, 0, 0], expect={**PHASE_WITHOUT_TAPS, **D2S3D_FALLS_BACK}),
    case("3d_symbolic_spatial", [1, 2, "D", "H", "W"], (2, 2, 3, 3, 3), strides=[2, 2, 2],
         pads=[1, 1, 1, 1, 1, 1], trials=[(1, 2, 2, 3, 3), (1, 2, 3, 2, 4)]),
    case("3d_symbolic_spatial_static_target", [1, 2, "D", "H", "W"], (2, 2, 3, 3, 3),
         strides=[2, 2, 2], pads=[1, 1, 1, 1, 1, 1], trials=[(1, 2, 2, 3, 3)],
         target="ethos-u", expect={"low_rank_transpose": "shape_arithmetic",
                                   "depth_to_space_3d": "shape_arithmetic"}),
    # ---- 3-D: the cases of depth_to_space_3d (s1 == s2; s0 any), the other emissions too
    case("3d_k2s2_pointwise", [1, 3, 2, 3, 4], (3, 2, 2, 2, 2), strides=[2, 2, 2]),
    case("3d_k2s2_pointwise_batch3_nobias", [3, 2, 3, 2, 3], (2, 3, 2, 2, 2), bias=False,
         strides=[2, 2, 2]),
    case("3d_k4s2p1_opset11", [1, 2, 2, 3, 3], (2, 2, 4, 4, 4), opset=11, strides=[2, 2, 2],
         pads=[1, 1, 1, 1, 1, 1]),
    case("3d_k3s2p1op1_fold_crop", [1, 2, 3, 3, 2], (2, 3, 3, 3, 3), strides=[2, 2, 2],
         pads=[1, 1, 1, 1, 1, 1], output_padding=[1, 1, 1]),
    case("3d_k1x2x2_s1x2x2", [1, 3, 4, 3, 2], (3, 2, 1, 2, 2), strides=[1, 2, 2]),
    case("3d_k3x4x4_s1x2x2_p1_batch2", [2, 2, 3, 3, 3], (2, 2, 3, 4, 4), strides=[1, 2, 2],
         pads=[1, 1, 1, 1, 1, 1]),
    case("3d_k3x2x2_s3x2x2", [1, 2, 2, 3, 2], (2, 2, 3, 2, 2), strides=[3, 2, 2]),
    case("3d_k5x4x3_s3x2x2_pads_asym_op", [1, 2, 2, 3, 3], (2, 2, 5, 4, 3), strides=[3, 2, 2],
         pads=[1, 1, 0, 2, 0, 1], output_padding=[1, 0, 1]),
    case("3d_k6s3_p1x2x1", [1, 2, 2, 2, 3], (2, 2, 6, 6, 6), strides=[3, 3, 3],
         pads=[1, 2, 1, 1, 2, 1]),
    case("3d_k3s2_d2", [1, 2, 3, 3, 3], (2, 2, 3, 3, 3), strides=[2, 2, 2], dilations=[2, 2, 2],
         pads=[1, 1, 1, 1, 1, 1], expect=PHASE_WITHOUT_TAPS),
    case("3d_k3s2_d3_opset13", [1, 2, 2, 3, 3], (2, 2, 3, 3, 3), opset=13, strides=[2, 2, 2],
         dilations=[3, 1, 3], pads=[2, 0, 1, 1, 1, 2]),
    case("3d_same_upper_k3s2", [1, 2, 3, 2, 3], (2, 2, 3, 3, 3), strides=[2, 2, 2],
         auto_pad="SAME_UPPER"),
    case("3d_valid_k3_s1x2x2", [1, 2, 2, 3, 3], (2, 2, 3, 3, 3), strides=[1, 2, 2],
         auto_pad="VALID"),
    case("3d_output_shape_s3x2x2", [1, 2, 2, 2, 3], (2, 2, 3, 3, 3), strides=[3, 2, 2],
         output_shape=[6, 5, 6]),
    case("3d_symbolic_batch", ["N", 2, 2, 3, 2], (2, 2, 4, 4, 4), strides=[2, 2, 2],
         pads=[1, 1, 1, 1, 1, 1], trials=[(1, 2, 2, 3, 2), (3, 2, 2, 3, 2)]),
    case("3d_symbolic_depth", [1, 2, "D", 3, 2], (2, 2, 3, 3, 3), strides=[2, 2, 2],
         pads=[1, 0, 1, 0, 1, 1], trials=[(1, 2, 2, 3, 2), (1, 2, 4, 3, 2)]),
    case("3d_output_shape_symbolic", ["N", 2, "D", "H", "W"], (2, 2, 3, 3, 3),
         strides=[2, 2, 2], output_shape=[5, 6, 5], trials=[(1, 2, 3, 3, 3), (2, 2, 2, 3, 2)]),
    case("3d_latent_1x1x1_input", [2, 4, 1, 1, 1], (4, 3, 4, 4, 4), strides=[1, 1, 1]),
    case("3d_k4s2p1_opset10", [1, 2, 2, 2, 3], (2, 2, 4, 4, 4), opset=10, strides=[2, 2, 2],
         pads=[1, 1, 1, 1, 1, 1], expect=D2S3D_FALLS_BACK),
    case("3d_k2s2_group2", [1, 4, 2, 3, 2], (4, 2, 2, 2, 2), strides=[2, 2, 2], group=2,
         expect=D2S3D_FALLS_BACK),
)
CASE_IDS = [c.id for c in CASES]
BY_ID = {c.id: c for c in CASES}


def _fallbacks(name: str) -> List[str]:
    """The emissions the chooser may take in place of ``name``, in order (its fallback chain)."""
    chain, seen = [], {name}
    nxt = registry.EMISSIONS[name].fallback
    while nxt is not None and nxt not in seen:
        chain.append(nxt)
        seen.add(nxt)
        nxt = registry.EMISSIONS[nxt].fallback
    return chain


@functools.lru_cache(maxsize=None)
def _model(case_id: str) -> onnx.ModelProto:
    c = BY_ID[case_id]
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    w = rng.standard_normal(c.w).astype(np.float32)
    m_out = c.w[1] * c.attributes.get("group", 1)
    b = rng.standard_normal(m_out).astype(np.float32) if c.bias else None
    return convtranspose_model(list(c.x), w, b, opset=c.opset, **c.attributes)


@functools.lru_cache(maxsize=None)
def _converted(case_id: str, strategy: str, target: Optional[str]):
    """(converted model, node report) of one case, converted once per process."""
    options = ConvertOptions(strategy=strategy, target=target or "portable")
    converted, report = deconv2sub.convert_model(_model(case_id), options)
    assert len(report.nodes) == 1
    return converted, report.nodes[0]


def _data_path_ops(model: onnx.ModelProto) -> Tuple[List[onnx.NodeProto], List[str]]:
    """The nodes that move data from the input (in order), and the op types of the others.

    A node moves data when one of its inputs does (the graph input does); ``Shape`` and what is
    computed from it only make shapes.
    """
    data = {i.name for i in model.graph.input}
    moving, shaping = [], []
    for node in model.graph.node:
        if node.op_type != "Shape" and any(i in data for i in node.input):
            data.update(node.output)
            moving.append(node)
        else:
            shaping.append(node.op_type)
    return moving, shaping


def _check_ops(name: str, converted: onnx.ModelProto, node) -> None:
    """The converted graph holds the ops ``name`` claims to write (:data:`EMISSION_OPS`)."""
    ops = op_types(converted)
    assert "ConvTranspose" not in ops
    moving, shaping = _data_path_ops(converted)
    moving_ops = [n.op_type for n in moving]
    # an emission may declare its ops itself (``ops``); else the table, else any emission's
    allowed = getattr(registry.EMISSIONS.get(name), "ops", None) or EMISSION_OPS.get(
        name, ANY_EMISSION_OPS
    )
    assert set(moving_ops) <= allowed, (name, moving_ops)
    assert set(shaping) <= SHAPE_OPS, (name, shaping)
    assert {"Conv", "Gemm"} & set(moving_ops), moving_ops
    transposes = [n for n in moving if n.op_type == "Transpose"]
    if name in MAX_TRANSPOSES:
        assert len(transposes) <= MAX_TRANSPOSES[name], moving_ops
    if name in MAX_TRANSPOSE_RANK:
        for t in transposes:
            perm = next(a.ints for a in t.attribute if a.name == "perm")
            assert len(perm) <= MAX_TRANSPOSE_RANK[name], list(perm)
    kind = node.shuffle or ""
    if kind == "none":
        assert not {"Transpose", "DepthToSpace", "Gather"} & set(moving_ops), moving_ops
    if kind.startswith("DepthToSpace"):
        assert "DepthToSpace" in moving_ops and "Transpose" not in moving_ops, moving_ops
    if "row Gather" in kind:
        assert moving_ops.count("Gather") == 1, moving_ops
    if "Gemm" in moving_ops:
        assert name == "pointwise_gemm" and "Conv" not in moving_ops, moving_ops


def _feeds(shape, seed: int) -> dict:
    return {"X": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}


def _assert_close(reference: list, got: list, what: str) -> None:
    assert len(reference) == len(got)
    for r, g in zip(reference, got):
        assert r.shape == g.shape, (what, r.shape, g.shape)
        scale = max(float(np.max(np.abs(r))) if r.size else 0.0, 1.0)
        err = float(np.max(np.abs(r.astype(np.float64) - g))) if r.size else 0.0
        assert err <= REL * scale, f"{what}: max abs err {err:.3g} (scale {scale:.3g})"


def _check(c: Case, strategy: str, target: Optional[str]) -> None:
    original = _model(c.id)
    converted, node = _converted(c.id, strategy, target)
    expected = c.expected(strategy) if strategy in registry.EMISSIONS else dict(c.expect).get("*")
    if node.rewritten:
        assert node.code is None and node.reason is None
        if strategy in registry.EMISSIONS:
            if expected in registry.EMISSIONS:  # the case is one its emission declines
                assert node.strategy == expected, (node.strategy, node.strategy_reason)
            else:
                assert expected is None, f"expected refusal {expected!r}: {node.summary()}"
                if strategy in EMISSION_OPS:  # the cases this emission declines are listed
                    assert node.strategy == strategy, (node.strategy, node.strategy_reason)
            if node.strategy != strategy:  # fell back: a refusal, then the declared fallback
                assert node.strategy in _fallbacks(strategy), node.strategy
                assert f": {node.strategy}" in node.strategy_reason, node.strategy_reason
                # the declined emissions as data: the chain from the asked one to the one taken
                chain = [strategy] + _fallbacks(strategy)
                assert [e for e, _ in node.declined] == chain[: chain.index(node.strategy)]
                assert all(code for _, code in node.declined), node.declined
            else:
                assert node.declined == [], node.declined
        _check_ops(node.strategy, converted, node)  # the emission written (default: chosen)
        onnx.checker.check_model(converted, full_check=True)
        for i, shape in enumerate(c.shapes()):
            feeds = _feeds(shape, i)
            _assert_close(run(original, feeds), run(converted, feeds), f"{c.id} at {shape}")
    else:
        assert node.code and node.reason, node
        if expected is not None:
            assert node.code == expected, (node.code, node.reason)
        assert op_types(converted) == op_types(original)
        for i, shape in enumerate(c.shapes()):
            feeds = _feeds(shape, i)
            for r, g in zip(run(original, feeds), run(converted, feeds)):
                np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("name", NAMES)
def test_emission_matches_ort_running_the_original(name, case_id):
    """Each emission, on each case: applied and equal to ORT's ConvTranspose, or declined."""
    c = BY_ID[case_id]
    _check(c, name, c.target)


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("target", DEFAULT_TARGETS)
def test_default_rule_matches_ort_running_the_original(target, case_id):
    """The default rule of each target profile, on each case (only ``expect["*"]`` holds)."""
    _check(BY_ID[case_id], "default", target)


@pytest.mark.parametrize("name", NAMES)
def test_every_emission_applies_on_enough_cases(name):
    """Each emission writes at least MIN_APPLIED cases itself, its signature op in some."""
    applied, signature = [], []
    for c in CASES:
        converted, node = _converted(c.id, name, c.target)
        if node.rewritten and node.strategy == name:
            applied.append(c.id)
            if SIGNATURE_OPS.get(name) in op_types(converted):
                signature.append(c.id)
    assert len(applied) >= MIN_APPLIED, (name, len(applied), len(CASES))
    if name in SIGNATURE_OPS:
        assert len(signature) >= 2, (name, signature)


def test_the_case_table_spans_the_attribute_space():
    """The table keeps every dimension of the attribute space (a shrunk table fails here)."""
    attrs = [c.attributes for c in CASES]
    ranks = {len(c.w) - 2 for c in CASES}
    strides = {s for a in attrs for s in a.get("strides", [1])}
    assert ranks == {1, 2, 3} and {1, 2, 3, 8} <= strides
    assert {c.opset for c in CASES} >= {9, 11, 13, 17}
    assert {a.get("auto_pad", "NOTSET") for a in attrs} == {
        "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"
    }
    assert any(len(set(a.get("strides", [1]))) > 1 for a in attrs)  # unequal strides
    assert any(max(a.get("dilations", [1])) > 1 for a in attrs)
    assert any(max(a.get("output_padding", [0])) > 0 for a in attrs)
    assert sum("output_shape" in a for a in attrs) >= 5
    pads = [a["pads"] for a in attrs if "pads" in a]
    assert any(p[: len(p) // 2] != p[len(p) // 2 :] for p in pads)  # asymmetric
    kernels = [(c.w[2:], c.attributes.get("strides", [1] * (len(c.w) - 2))) for c in CASES]
    assert any(any(k % s for k, s in zip(ks, ss)) for ks, ss in kernels)  # k not multiple of s
    assert any(a.get("group", 1) > 1 and c.w[1] == 1 for a, c in zip(attrs, CASES))  # depthwise
    assert any(a.get("group", 1) > 1 and c.w[1] > 1 for a, c in zip(attrs, CASES))
    assert any(c.x[0] != 1 for c in CASES) and any(not c.bias for c in CASES)
    assert any(any(isinstance(v, str) for v in c.x[2:]) for c in CASES)  # symbolic sizes


# ---- random sweeps -------------------------------------------------------------------------------


@st.composite
def configs(draw, strategies=("default",), targets=("onnxruntime", "openvino")):
    """A random valid ConvTranspose configuration, and the strategy and target to convert with."""
    rank = draw(st.integers(1, 3))
    small = rank == 3
    axes = []
    for _ in range(rank):
        s = draw(st.integers(1, 3))
        axes.append(dict(
            k=draw(st.integers(1, 3 if small else 5)),
            s=s,
            d=draw(st.integers(1, 2)),
            pb=draw(st.integers(0, 3)),
            pe=draw(st.integers(0, 3)),
            op=draw(st.integers(0, s - 1)),
            size=draw(st.integers(1, 4 if small else 6)),
            out_delta=draw(st.integers(-3, 2)),  # output_shape: the full output + out_delta
        ))
    group = draw(st.sampled_from([1, 2]))
    return dict(
        rank=rank,
        axes=axes,
        group=group,
        c=group * draw(st.integers(1, 2)),
        m_per_group=draw(st.integers(1, 2)),
        auto_pad=draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])),
        output_shape=draw(st.sampled_from([False, False, False, True])),
        bias=draw(st.booleans()),
        symbolic=draw(st.sampled_from(["none", "batch", "spatial", "all"])),
        batch=draw(st.integers(1, 3)),
        opset=draw(st.sampled_from([9, 11, 13, 17])),
        strategy=draw(st.sampled_from(strategies)),
        target=draw(st.sampled_from(targets)),  # the default rule differs per target
    )


def _full(a) -> int:
    return a["s"] * (a["size"] - 1) + a["op"] + a["d"] * (a["k"] - 1) + 1


def _out_size(a, auto_pad, output_shape=False):
    if output_shape:
        return _full(a) + a["out_delta"]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return a["size"] * a["s"]
    pads = 0 if auto_pad == "VALID" else a["pb"] + a["pe"]
    return _full(a) - pads


def _random_case(cfg) -> None:
    """Convert one drawn configuration; it must be rewritten and match ORT at every trial shape."""
    axes, auto_pad, out_shape = cfg["axes"], cfg["auto_pad"], cfg["output_shape"]
    assume(all(_out_size(a, auto_pad, out_shape) > 0 for a in axes))
    # ONNX Runtime runs an output_shape at most stride - 1 - output_padding past the full output
    assume(not out_shape or all(a["out_delta"] <= a["s"] - 1 - a["op"] for a in axes))
    rng = np.random.default_rng(0)
    w_shape = (cfg["c"], cfg["m_per_group"]) + tuple(a["k"] for a in axes)
    w = rng.standard_normal(w_shape).astype(np.float32)
    m_out = cfg["m_per_group"] * cfg["group"]
    b = rng.standard_normal(m_out).astype(np.float32) if cfg["bias"] else None
    attrs = dict(strides=[a["s"] for a in axes], dilations=[a["d"] for a in axes],
                 output_padding=[a["op"] for a in axes], group=cfg["group"])
    if auto_pad == "NOTSET":
        attrs["pads"] = [a["pb"] for a in axes] + [a["pe"] for a in axes]
    else:
        attrs["auto_pad"] = auto_pad
    if out_shape:
        attrs["output_shape"] = [_full(a) + a["out_delta"] for a in axes]
    sym = cfg["symbolic"]
    shape = [("N" if sym in ("batch", "all") else cfg["batch"]), cfg["c"]]
    shape += [(f"D{i}" if sym in ("spatial", "all") else a["size"]) for i, a in enumerate(axes)]
    model = convtranspose_model(shape, w, b, opset=cfg["opset"], **attrs)
    options = ConvertOptions(strategy=cfg["strategy"], target=cfg["target"])
    converted, report = deconv2sub.convert_model(model, options)
    node = report.nodes[0]
    if out_shape and sym in ("spatial", "all") and cfg["opset"] < 10:  # run-time Slice starts
        assert node.code == "runtime_crop" and op_types(converted) == ["ConvTranspose"]
        return
    assert report.rewritten and not report.skipped, [n.reason for n in report.skipped]
    name = cfg["strategy"]
    if name in registry.EMISSIONS:
        assert node.strategy in [name] + _fallbacks(name), node.strategy
    _check_ops(node.strategy, converted, node)
    onnx.checker.check_model(converted, full_check=True)

    trials = [tuple([cfg["batch"], cfg["c"]] + [a["size"] for a in axes])]
    if sym != "none":
        bigger = [cfg["batch"] + (1 if sym in ("batch", "all") else 0), cfg["c"]]
        bigger += [
            a["size"] + (i + 2 if sym in ("spatial", "all") else 0) for i, a in enumerate(axes)
        ]
        trials.append(tuple(bigger))
    for t in trials:
        feeds = {"X": rng.standard_normal(t).astype(np.float32)}
        _assert_close(run(model, feeds), run(converted, feeds), f"{cfg} at {t}")


_EXAMPLES = int(os.environ.get("DECONV2SUB_PROPERTY_EXAMPLES", "60"))


@settings(max_examples=_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs())
def test_random_default_rule_matches_ort(cfg):
    """The default rules on random configurations (rank 1-3, every attribute, symbolic dims)."""
    _random_case(cfg)


@pytest.mark.slow
@settings(max_examples=max(50 * _EXAMPLES, 3000), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(strategies=NAMES + ("default",),
                   targets=("portable", "onnxruntime", "openvino")))
def test_random_emission_sweep_matches_ort(cfg):
    """Every emission (and the default rules) on random configurations."""
    _random_case(cfg)
