"""deconv2sub.plan.phases: the phase Convs, assembled in numpy, equal ONNX's ConvTranspose.

The reference is the ConvTranspose definition itself, computed by brute force (every input cell
scattered through every tap); the phase Convs are computed as plain correlations and interleaved
by output phase. No runtime is involved.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from deconv2sub.plan.phases import macs_ratio, phase_split
from deconv2sub.plan.subpixel import ConvTransposeAttrs, make_plan


def _convtranspose(x, w, b, strides, dilations, pads, output_padding):
    """ONNX ConvTranspose (group 1) by brute force: scatter, then crop the begin/end pads."""
    n, c = x.shape[:2]
    m, kernel, spatial = w.shape[1], w.shape[2:], x.shape[2:]
    rank = len(spatial)
    full = [s * (i - 1) + op + d * (k - 1) + 1
            for i, k, s, d, op in zip(spatial, kernel, strides, dilations, output_padding)]
    y = np.zeros((n, m, *full), np.float64)
    for i in itertools.product(*[range(v) for v in spatial]):
        for k in itertools.product(*[range(v) for v in kernel]):
            j = tuple(s * ii + d * kk for ii, kk, s, d in zip(i, k, strides, dilations))
            y[(slice(None), slice(None)) + j] += np.einsum(
                "nc,cm->nm", x[(slice(None), slice(None)) + i], w[(slice(None), slice(None)) + k]
            )
    crop = tuple(slice(pads[a], full[a] - pads[rank + a]) for a in range(rank))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y += b.reshape((1, m) + (1,) * rank)
    return y


def _correlate(x, w, pads, dilations):
    """ONNX Conv, stride 1, group 1: ``out[n, r, u] = sum x_p[n, c, u + d*l] w[r, c, l]``."""
    rank = x.ndim - 2
    width = [(0, 0), (0, 0)] + [(pads[a], pads[rank + a]) for a in range(rank)]
    xp = np.pad(x, width)
    kernel = w.shape[2:]
    out_size = [xp.shape[2 + a] - dilations[a] * (kernel[a] - 1) for a in range(rank)]
    out = np.zeros((x.shape[0], w.shape[0], *out_size), np.float64)
    for k in itertools.product(*[range(v) for v in kernel]):
        window = tuple(slice(d * kk, d * kk + o) for kk, d, o in zip(k, dilations, out_size))
        out += np.einsum("nc...,rc->nr...", xp[(slice(None), slice(None)) + window],
                         w[(slice(None), slice(None)) + k])
    return out


def _assemble(plan, split, x):
    """Run every phase Conv and put its rows ``(m, i...)`` at their output phases."""
    m, strides = plan.out_channels, plan.strides
    outs = {}
    for pc in split.convs:
        z = _correlate(x, pc.weight, pc.pads, pc.dilations)
        z = z + (0 if pc.bias is None else pc.bias.reshape((1, -1) + (1,) * plan.rank))
        within = list(itertools.product(*[range(g) for _, g in split.groups]))
        z = z.reshape((z.shape[0], m, len(within)) + z.shape[2:])
        for w_index, i in enumerate(within):
            phase = tuple(pc.group[a] * split.groups[a][1] + i[a] for a in range(plan.rank))
            outs[phase] = z[:, :, w_index]
    q = next(iter(outs.values())).shape[2:]
    y = np.zeros((x.shape[0], m) + tuple(s * v for s, v in zip(strides, q)))
    for phase, z in outs.items():
        y[(slice(None), slice(None)) + tuple(slice(p, None, s) for p, s in zip(phase, strides))] = z
    return y


CASES = [
    # kernel, strides, dilations, pads, output_padding, input size
    ((3,), (2,), (1,), (1, 0), (1,), (5,)),  # ENet-like 1-D
    ((4,), (2,), (1,), (1, 1), (0,), (6,)),  # DCGAN-like 1-D
    ((16,), (8,), (1,), (4, 4), (0,), (3,)),  # FCN k16 s8
    ((5,), (3,), (2,), (3, 1), (2,), (4,)),
    ((3, 3), (2, 2), (1, 1), (1, 1, 0, 0), (1, 1), (4, 5)),  # ENet k3 s2 p1 op1
    ((4, 4), (2, 2), (1, 1), (1, 1, 1, 1), (0, 0), (3, 4)),  # DCGAN k4 s2 p1
    ((3, 5), (2, 3), (1, 1), (0, 1, 2, 0), (1, 0), (3, 3)),
    ((3, 2), (1, 2), (2, 1), (1, 0, 0, 1), (0, 1), (4, 3)),
]


@pytest.mark.parametrize("kernel, strides, dilations, pads, op, size", CASES)
def test_phase_convs_equal_the_convtranspose_definition(kernel, strides, dilations, pads, op, size):
    """Each phase Conv has only its own taps; interleaved, they equal ConvTranspose exactly."""
    rng = np.random.default_rng(len(kernel) * 10 + kernel[0])
    c, m = 2, 3
    w = rng.standard_normal((c, m) + kernel)
    b = rng.standard_normal(m)
    attrs = ConvTransposeAttrs(strides=list(strides), dilations=list(dilations), pads=list(pads),
                               output_padding=list(op))
    plan = make_plan(w, b, attrs, list(size), fold_crop="always")
    split = phase_split(plan)
    assert split is not None
    x = rng.standard_normal((2, c) + size)
    reference = _convtranspose(x, w, b, strides, dilations, pads, op)
    got = _assemble(plan, split, x)
    crop = tuple(slice(a.crop_begin, a.crop_begin + o)
                 for a, o in zip(plan.axes, reference.shape[2:]))
    np.testing.assert_allclose(got[(slice(None), slice(None)) + crop], reference, atol=1e-9)
    # every tap of the kernel is stored exactly once over the phase Convs (per channel pair)
    stored = sum(int(np.count_nonzero(pc.weight)) for pc in split.convs)
    assert stored == w.size


def test_a_phase_without_taps_has_no_split():
    """Kernel 1, stride 2: one phase gets no tap, so there is no phase split."""
    plan = make_plan(np.ones((1, 1, 1), np.float32), None, ConvTransposeAttrs(strides=[2]), [4],
                     fold_crop="always")
    assert phase_split(plan) is None and macs_ratio(plan) == 1.0


@pytest.mark.parametrize("kernel, strides, taps", [((3, 3), (2, 2), 9), ((4, 4), (2, 2), 16),
                                                   ((2, 2), (2, 2), 4), ((3,), (2,), 3)])
def test_macs_ratio_counts_the_real_taps(kernel, strides, taps):
    """The phase Convs store the kernel's taps per channel pair, the single Conv L^n per phase."""
    w = np.ones((1, 1) + kernel, np.float32)
    plan = make_plan(w, None, ConvTransposeAttrs(strides=list(strides)), None, fold_crop="always")
    shared = make_plan(w, None, ConvTransposeAttrs(strides=list(strides)), None)
    single = int(np.prod(strides)) * int(np.prod([-(-k // s) for k, s in zip(kernel, strides)]))
    assert shared.weight.shape[0] * int(np.prod(shared.weight.shape[2:])) == single
    assert macs_ratio(plan) == pytest.approx(taps / single)
