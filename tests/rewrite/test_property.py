"""Property test: random valid ConvTranspose configurations.

Converted, and checked against ORT running the original.

Rank 1-3; per axis kernel, stride, dilation, pads, output_padding < stride; group; bias; auto_pad;
symbolic dims (then two input shapes). Every drawn node must be rewritten and match ORT to float
rounding.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from builders import assert_equivalent, convtranspose_model, op_types
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import deconv2sub


@st.composite
def configs(draw):
    """A random valid ConvTranspose configuration (rank, attributes, groups, dims)."""
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
        ))
    group = draw(st.sampled_from([1, 2]))
    c = group * draw(st.integers(1, 2))
    m_per_group = draw(st.integers(1, 2))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    bias = draw(st.booleans())
    symbolic = draw(st.sampled_from(["none", "batch", "spatial", "all"]))
    batch = draw(st.integers(1, 2))
    # the default rule differs per target
    target = draw(st.sampled_from(["onnxruntime", "openvino"]))
    return dict(
        rank=rank,
        axes=axes,
        group=group,
        c=c,
        m_per_group=m_per_group,
        auto_pad=auto_pad,
        bias=bias,
        symbolic=symbolic,
        batch=batch,
        target=target,
    )


def _out_size(a, auto_pad):
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return a["size"] * a["s"]
    pads = 0 if auto_pad == "VALID" else a["pb"] + a["pe"]
    return a["s"] * (a["size"] - 1) + a["op"] + a["d"] * (a["k"] - 1) + 1 - pads


@settings(
    max_examples=int(os.environ.get("DECONV2SUB_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(cfg=configs())
def test_random_convtranspose_matches_ort(cfg):
    """A random ConvTranspose converts and matches ORT running the original."""
    axes, auto_pad = cfg["axes"], cfg["auto_pad"]
    assume(all(_out_size(a, auto_pad) > 0 for a in axes))
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cfg["c"], cfg["m_per_group"]) + tuple(a["k"] for a in axes)).astype(
        np.float32
    )
    b = (
        rng.standard_normal(cfg["m_per_group"] * cfg["group"]).astype(np.float32)
        if cfg["bias"]
        else None
    )
    attrs = dict(strides=[a["s"] for a in axes], dilations=[a["d"] for a in axes],
                 output_padding=[a["op"] for a in axes], group=cfg["group"])
    if auto_pad == "NOTSET":
        attrs["pads"] = [a["pb"] for a in axes] + [a["pe"] for a in axes]
    else:
        attrs["auto_pad"] = auto_pad
    sym = cfg["symbolic"]
    shape = [("N" if sym in ("batch", "all") else cfg["batch"]), cfg["c"]]
    shape += [(f"D{i}" if sym in ("spatial", "all") else a["size"]) for i, a in enumerate(axes)]
    model = convtranspose_model(shape, w, b, **attrs)
    converted, report = deconv2sub.convert_model(
        model, deconv2sub.ConvertOptions(target=cfg["target"])
    )
    assert report.rewritten and not report.skipped, [n.reason for n in report.skipped]
    assert "ConvTranspose" not in op_types(converted)
    onnx.checker.check_model(converted, full_check=True)

    trials = [tuple([cfg["batch"], cfg["c"]] + [a["size"] for a in axes])]
    if sym != "none":
        bigger = [cfg["batch"] + (1 if sym in ("batch", "all") else 0), cfg["c"]]
        bigger += [
            a["size"] + (i + 2 if sym in ("spatial", "all") else 0) for i, a in enumerate(axes)
        ]
        trials.append(tuple(bigger))
    for t in trials:
        assert_equivalent(
            model, converted, {"X": rng.standard_normal(t).astype(np.float32)}, rel=5e-5
        )
