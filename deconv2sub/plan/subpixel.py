"""The sub-pixel plan: pure arithmetic turning a ConvTranspose into Conv + periodic shuffle + crop.

Nothing here knows about ONNX protobufs or graphs: attributes and the kernel go in, the
low-resolution Conv's kernel, pads and dilations, the shuffle's channel order and the crop come out.

Derivation (one spatial axis; every axis is independent, channels are handled below)
-----------------------------------------------------------------------------------
Let ``x[i]`` (``0 <= i < I``) be the input, ``w[k]`` (``0 <= k < K``) the kernel, ``s`` the stride,
``d`` the dilation, ``pb``/``pe`` the begin/end pads and ``op`` the output padding. ONNX defines the
transposed convolution as a scatter into an (unbounded, zero-initialised) full output

    y_full[j] = sum_{i, k : j = s*i + d*k} x[i] * w[k]

followed by a crop: ``y[o] = y_full[o + pb]`` for ``0 <= o < O`` with

    O = s*(I - 1) + op + d*(K - 1) + 1 - pb - pe.

(``output_padding`` just lengthens the window; the cells it adds are real sums, not zeros.)

Split the full output into ``s`` phases, ``j = s*q + p`` with ``0 <= p < s``. A tap ``k`` reaches
phase ``p`` exactly when ``d*k ≡ p (mod s)``, and then ``i = q - t_k`` with
``t_k = (d*k - p)/s = floor(d*k/s)``:

    y_full[s*q + p] = sum_{k : d*k ≡ p (mod s)} x[q - t_k] * w[k].

For each phase this is an ordinary *correlation* over the low-resolution index ``q``. With
``T = floor(d*(K - 1)/s)`` (the largest ``t_k``) put tap ``k`` at position ``m = T - t_k`` of a
kernel of ``L = T + 1`` taps, ``v_p[T - t_k] = w[k]`` (every other tap 0). An ONNX ``Conv`` with
begin pad ``a`` computes ``z_p[u] = sum_m x[u + m - a] * v_p[m]``; choosing ``a = T - q0`` gives
``z_p[u] = y_full[s*(u + q0) + p]``. We take ``q0 = min(floor(pb/s), T)`` so that ``a >= 0``.

All ``s`` phases share ``L``, ``a`` and the end pad, so they stack as ``s`` times more output
channels of ONE Conv. The periodic shuffle (DepthToSpace, or Reshape/Transpose) interleaves them:
``Y[s*u + p] = z_p[u] = y_full[s*q0 + s*u + p]``, hence ``y[o] = Y[o + c0]`` with the begin crop
``c0 = pb - s*q0`` (``0 <= c0 < s`` unless ``pb > s*T``).

The end pad ``b`` makes the Conv output ``Q = I + a + b - L + 1`` long; we need ``s*Q >= c0 + O``,
i.e. ``Q - I >= E = ceil((c0 - s + op + d*(K - 1) + 1 - pb - pe) / s)``, so ``b = E - a + L - 1``
(raised to 0 if negative, the surplus is cropped). ``Q - I`` and the end crop ``e = s*Q - c0 - O``
do not depend on ``I``: symbolic sizes keep working, nothing about the input size is baked in.

Dilation of the Conv: the used positions ``m`` may all be multiples of some ``D > 1`` (stride 1 with
dilation ``d`` gives ``D = d``). Then the kernel is stored compressed (``L' = (L - 1)/D + 1`` taps)
and the Conv gets dilation ``D``; its footprint, pads and output length are unchanged.

Several axes: phases are tuples ``(p_1, ..., p_n)``, ``P = prod(s_a)`` of them, and the kernel slice
of a phase is the outer product of the per-axis selections.

Channels and groups: ONNX's ConvTranspose weight is ``W[C, M/g, k...]`` (input channel first) and
group ``gi`` maps input channels ``[gi*C/g, (gi+1)*C/g)`` to output channels
``[gi*M/g, (gi+1)*M/g)``. The Conv weight is ``V[M*P, C/g, L...]``. In "CRD" order output channel
``m``'s phases are contiguous, ``V[m*P + phase] = slice of W[:, m]``; this keeps every group's
channels in one block, so the Conv keeps ``group = g``, and matches DepthToSpace(mode=CRD) /
PyTorch's pixel_shuffle. "DCR" order, ``V[phase*M + m]``, matches DepthToSpace(mode=DCR) (the only
mode before opset 11) and is only used for ``g = 1``. The bias is repeated per phase in the same
order. "LCR" order (lead phase, channel, rest; ``g = 1``) puts the phase of the *lead* axis (the
last axis with ``s > 1``) first: ``V[(p_lead, m, other phases)]``. It lets the shuffle run as a
cheap block move plus one ``[s_lead, L] -> [L, s_lead]`` transpose (see
:mod:`deconv2sub.rewrite.shuffle`). :meth:`SubPixelPlan.row_channels` maps every Conv output row
back to ``m``.

Folding the begin crop into the phases (``fold_crop``). The crop ``y[o] = Y[o + c0]`` reads output
phase ``p'`` (``o = s*v + p'``) from Conv phase ``p = (p' + c0) mod s`` at ``v + δ``,
``δ = (p' + c0) div s``: ``y[s*v + p'] = sum_m x[v + δ + m - a] * v_p[m]``. Re-indexing every phase
by its input offset ``j = δ + m - a`` gives a Conv whose phases are the *output* phases, with begin
pad ``-min j`` and ``max j - min j + 1`` taps, and no begin crop (the end crop is
``s*ceil(O/s) - O``, zero when ``s`` divides ``O``). Taps are still copied, never computed. It is
only done when it costs nothing: the folded kernel has no more taps than the unfolded one (ENet's k3
s2 p1 op1: yes; DCGAN's k4 s2 p1: no, 3 taps instead of 2) and the begin pad stays >= 0.

Pads from ``auto_pad`` / ``output_shape`` follow ONNX (checked against ONNX Runtime by the tests):
``total = s*(I - 1) + op + d*(K - 1) + 1 - out`` where ``out`` is ``output_shape`` or ``I*s`` for
SAME_*; SAME_UPPER puts the odd unit at the end (``pb = total // 2``), every other mode at the
start. For SAME_* without ``output_shape`` ONNX Runtime clamps a negative total (kernel smaller than
stride) to 0; so do we.

``output_shape`` longer than the full output (``total < 0``, ONNX's
``test_convtranspose_output_shape``): ONNX Runtime puts every extra cell at the END, whatever
``auto_pad`` says (measured: ``pb = 0``, ``pe = total``), and accepts at most ``-total <= s - 1 -
op`` (it rejects the node at run time beyond that; we decline it). The derivation above holds
unchanged for ``pe < 0``: ``y_full`` is zero past its last tap, so the extra cells are the bias
only, and the Conv computes them from a larger end pad: ``E = ceil((op + d*(K - 1) + 1 - pe - s) /
s) <= ceil(d*(K - 1) / s) <= L``, so ``b <= L`` (the Conv window may lie entirely in the padding,
reading zeros). ``pb = 0`` means ``c0 = 0``: no begin crop to fold.

``output_shape`` with a symbolic input size: ``total = s*I + op + d*(K - 1) + 1 - s - out`` depends
on the run-time ``I``. The plan takes the longest output ONNX Runtime accepts, ``pb = 0`` and ``pe =
-(s - 1 - op)`` (so ``c0 = 0`` and ``O = s*(I - 1) + op + d*(K - 1) + 1 + s - 1 - op``; ``Q - I``
and ``e`` stay independent of ``I``), and marks the axis ``runtime_out = out``: after the shuffle it
is cut at run time to ``[pb_rt, pb_rt + out)`` with ``pb_rt`` the begin pad above computed from
``max(total, 0)`` (:func:`deconv2sub.rewrite.shuffle.emit_runtime_crop`). That window lies inside
the planned output for every size ONNX Runtime accepts: ``pb_rt + out <= full`` when ``total >= 0``,
and ``out = full - total <= full + s - 1 - op`` when ``total < 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "ConvTransposeAttrs",
    "AxisPlan",
    "SubPixelPlan",
    "PlanError",
    "resolve_pads",
    "make_plan",
]


class PlanError(ValueError):
    """The ConvTranspose cannot be planned; ``str()`` is the one-line reason."""


@dataclass(frozen=True)
class ConvTransposeAttrs:
    """ConvTranspose attributes, normalised to one entry per spatial axis where given."""

    strides: Optional[Sequence[int]] = None
    dilations: Optional[Sequence[int]] = None
    pads: Optional[Sequence[int]] = None  # [b1, ..., bn, e1, ..., en]
    output_padding: Optional[Sequence[int]] = None
    output_shape: Optional[Sequence[int]] = None
    auto_pad: str = "NOTSET"
    group: int = 1
    kernel_shape: Optional[Sequence[int]] = None


@dataclass(frozen=True)
class AxisPlan:
    """What happens along one spatial axis."""

    stride: int
    kernel: int  # original kernel size K
    dilation: int  # original dilation d
    pad_begin: int  # resolved ConvTranspose pads
    pad_end: int
    output_padding: int
    taps: int  # stored Conv kernel taps L'
    conv_dilation: int  # D
    conv_pad_begin: int  # a
    conv_pad_end: int  # b
    crop_begin: int  # c0
    crop_end: int  # e (cells dropped at the end of the shuffled axis)
    growth: int  # Q - I: low-resolution Conv output length minus input length
    # ``output_shape`` on an axis whose input size is symbolic: its length, cut at run time (the
    # begin pad depends on the input size; see the module docstring). None: the crop above is all.
    runtime_out: Optional[int] = None
    pad_upper: bool = False  # SAME_UPPER: the odd unit of the run-time total pad goes to the end

    @property
    def runtime_total_offset(self) -> int:
        """``total - s*I`` of a run-time axis: ``total = s*I + op + d*(K - 1) + 1 - s - out``."""
        taps_end = self.output_padding + self.dilation * (self.kernel - 1) + 1
        return taps_end - self.stride - self.runtime_out

    def output_size(self, size: int) -> int:
        """ConvTranspose output length for input length ``size`` (the ONNX formula)."""
        if self.runtime_out is not None:
            return self.runtime_out
        return (
            self.stride * (size - 1)
            + self.output_padding
            + self.dilation * (self.kernel - 1)
            + 1
            - self.pad_begin
            - self.pad_end
        )


@dataclass
class SubPixelPlan:
    """The emission for one ConvTranspose.

    Conv(weight, bias, pads, dilations, group) → shuffle → crop.
    """

    axes: tuple
    group: int
    in_channels: int  # C
    out_channels: int  # M (of the ConvTranspose)
    order: str  # "CRD", "DCR" or "LCR": channel order of the Conv output (see row_layout)
    weight: np.ndarray  # [M*P, C/g, L'...]
    bias: Optional[np.ndarray]  # [M*P] or None
    empty_phases: int = 0  # phases that receive no tap (their output is the bias only)
    notes: list = field(default_factory=list)
    # per axis, [s, L'] array: the original tap index at (phase, stored position), or -1 for none
    tap_tables: tuple = ()

    @property
    def lead_axis(self) -> Optional[int]:
        """The last spatial axis with stride > 1 (its phase leads the channels in "LCR" order)."""
        axes = [i for i, a in enumerate(self.axes) if a.stride > 1]
        return axes[-1] if axes else None

    def row_layout(self) -> list:
        """The Conv output channel axis as named factors, outermost first.

        ``("M", M)`` and ``("S<a>", s_a)`` for every axis ``a`` with ``s_a > 1``; ``M`` stands for
        ``(g, M/g)``.
        """
        phases = [(f"S{i}", a.stride) for i, a in enumerate(self.axes) if a.stride > 1]
        if self.order == "CRD":
            return [("M", self.out_channels)] + phases
        if self.order == "DCR":
            return phases + [("M", self.out_channels)]
        lead = f"S{self.lead_axis}"
        return (
            [p for p in phases if p[0] == lead]
            + [("M", self.out_channels)]
            + [p for p in phases if p[0] != lead]
        )

    def row_channels(self) -> np.ndarray:
        """Output channel ``m`` of every Conv output row."""
        return layout_row_channels(self.row_layout())


    @property
    def rank(self) -> int:
        """Number of spatial axes."""
        return len(self.axes)

    @property
    def strides(self) -> tuple:
        """Stride of every axis."""
        return tuple(a.stride for a in self.axes)

    @property
    def phases(self) -> int:
        """Number of phases ``P``, the product of the strides."""
        return int(np.prod(self.strides, dtype=np.int64))

    @property
    def conv_pads(self) -> list:
        """The Conv's ``pads`` attribute: every begin pad, then every end pad."""
        return [a.conv_pad_begin for a in self.axes] + [a.conv_pad_end for a in self.axes]

    @property
    def conv_dilations(self) -> list:
        """The Conv's ``dilations`` attribute."""
        return [a.conv_dilation for a in self.axes]

    @property
    def conv_kernel(self) -> tuple:
        """The Conv's spatial kernel shape."""
        return tuple(self.weight.shape[2:])

    @property
    def needs_shuffle(self) -> bool:
        """Whether there is more than one phase to interleave."""
        return self.phases > 1

    @property
    def needs_crop(self) -> bool:
        """Whether any axis is cropped after the shuffle (constant or at run time)."""
        return any(a.crop_begin or a.crop_end or a.runtime_out is not None for a in self.axes)

    @property
    def runtime_axes(self) -> list:
        """Axes cropped at run time (``output_shape`` with a symbolic input size)."""
        return [i for i, a in enumerate(self.axes) if a.runtime_out is not None]

    def output_shape(self, spatial: Sequence[int]) -> tuple:
        """Output spatial sizes for the input spatial sizes ``spatial``."""
        return tuple(a.output_size(i) for a, i in zip(self.axes, spatial))

    def macs_per_input_pixel(self) -> int:
        """Multiply-accumulates of the Conv per low-resolution input position (batch 1)."""
        return int(np.prod(self.weight.shape, dtype=np.int64))


def layout_row_channels(layout: Sequence) -> np.ndarray:
    """Output channel ``m`` of every row of a channel axis laid out as ``[(name, size), ...]``.

    Factors are outermost first, one of them named "M".
    """
    grid = np.indices([n for _, n in layout]).reshape(len(layout), -1)
    return grid[[name for name, _ in layout].index("M")]


def _per_axis(value, n: int, default: int, name: str) -> list:
    if value is None or len(value) == 0:
        return [default] * n
    value = [int(v) for v in value]
    if len(value) != n:
        raise PlanError(f"{name} has {len(value)} entries, expected {n} (one per spatial axis)")
    return value


def resolve_pads(
    attrs: ConvTransposeAttrs,
    kernel: Sequence[int],
    input_spatial: Optional[Sequence[Optional[int]]] = None,
) -> tuple:
    """Begin and end pads per axis after applying ``auto_pad`` and ``output_shape``.

    ``input_spatial`` (ints, or None for unknown sizes) is only needed with ``output_shape``; an
    axis whose size is unknown gets the pads of the longest output ONNX Runtime accepts (``0`` and
    ``-(s - 1 - op)``), its crop is cut at run time (``AxisPlan.runtime_out``).
    Returns ``(pads_begin, pads_end)``.
    """
    n = len(kernel)
    strides = _per_axis(attrs.strides, n, 1, "strides")
    dilations = _per_axis(attrs.dilations, n, 1, "dilations")
    out_pad = _per_axis(attrs.output_padding, n, 0, "output_padding")
    auto_pad = (attrs.auto_pad or "NOTSET").upper()
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise PlanError(f"unknown auto_pad {attrs.auto_pad!r}")

    def split(total: int) -> tuple:
        if auto_pad == "SAME_UPPER":
            return total // 2, total - total // 2
        return total - total // 2, total // 2

    out = runtime_output_sizes(attrs, n)
    if out is not None:
        begins, ends = [], []
        for a in range(n):
            size = None if input_spatial is None else input_spatial[a]
            if size is None:  # run-time crop: plan the longest output, no begin pad
                begins.append(0)
                ends.append(-(strides[a] - 1 - out_pad[a]))
                continue
            full = strides[a] * (size - 1) + out_pad[a] + dilations[a] * (kernel[a] - 1) + 1
            total = full - out[a]
            if total < -(strides[a] - 1 - out_pad[a]):
                raise PlanError(
                    f"output_shape {out[a]} on axis {a} exceeds the full transposed output "
                    f"{full} by "
                    f"{-total}; ONNX Runtime accepts at most stride - 1 - output_padding = "
                    f"{strides[a] - 1 - out_pad[a]} more (it rejects the node at run time)"
                )
            # A negative total (longer than the full output): ONNX Runtime adds the cells at the
            # end, whatever auto_pad says (measured); they receive no tap.
            b, e = split(total) if total >= 0 else (0, total)
            begins.append(b)
            ends.append(e)
        return begins, ends
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for a in range(n):
            # ONNX Runtime clamps a negative total to 0 (kernel smaller than stride): the output is
            # then s*(I-1) + op + d*(K-1) + 1 long, not I*s. We follow the runtime.
            total = max(0, out_pad[a] + dilations[a] * (kernel[a] - 1) + 1 - strides[a])
            b, e = split(total)
            begins.append(b)
            ends.append(e)
        return begins, ends
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    pads = attrs.pads
    if pads is None or len(pads) == 0:
        return [0] * n, [0] * n
    pads = [int(p) for p in pads]
    if len(pads) != 2 * n:
        raise PlanError(f"pads has {len(pads)} entries, expected {2 * n}")
    if any(p < 0 for p in pads):
        raise PlanError(f"negative pads {pads} are not supported")
    return pads[:n], pads[n:]


def runtime_output_sizes(attrs: ConvTransposeAttrs, n: int) -> Optional[list]:
    """The last ``n`` entries of ``output_shape`` (None when it is not given)."""
    if attrs.output_shape is None or len(attrs.output_shape) == 0:
        return None
    out = [int(v) for v in attrs.output_shape][-n:]
    if len(out) != n:
        raise PlanError(f"output_shape has {len(attrs.output_shape)} entries for {n} spatial axes")
    return out


def _axis_plan(s: int, d: int, k: int, pb: int, pe: int, op: int) -> tuple:
    """Plan one axis. Returns (AxisPlan without taps/dilation filled, tap index table, T)."""
    t_max = (d * (k - 1)) // s
    length = t_max + 1
    # table[p][m] = k or -1 (no tap)
    table = np.full((s, length), -1, dtype=np.int64)
    for kk in range(k):
        p = (d * kk) % s
        t = (d * kk - p) // s
        table[p, t_max - t] = kk
    q0 = min(pb // s, t_max)
    a = t_max - q0
    c0 = pb - s * q0
    need = c0 - s + op + d * (k - 1) + 1 - pb - pe
    e_low = -((-need) // s)  # ceil(need / s)
    b = e_low - a + length - 1
    b = max(b, 0)
    growth = a + b - length + 1  # Q - I
    crop_end = s * growth - c0 + s - op - d * (k - 1) - 1 + pb + pe
    assert crop_end >= 0, (s, d, k, pb, pe, op)
    return table, t_max, a, b, c0, crop_end, growth


def _fold_axis(
    table: np.ndarray,
    a: int,
    c0: int,
    s: int,
    d: int,
    k: int,
    pb: int,
    pe: int,
    op: int,
    grow: bool = False,
) -> Optional[tuple]:
    """Fold the begin crop into the phases (see the module docstring); None when it would cost taps.

    Returns (table, a, b, crop_end, growth) of the folded axis.
    """
    length = table.shape[1]
    rows = []
    for p_out in range(s):
        p, delta = (p_out + c0) % s, (p_out + c0) // s
        rows.append([(delta + m - a, int(table[p, m])) for m in range(length) if table[p, m] >= 0])
    offsets = [j for row in rows for j, _ in row]
    if not offsets:
        return None
    j_min, j_max = min(offsets), max(offsets)
    new_length, new_a = j_max - j_min + 1, -j_min
    if (new_length > length and not grow) or new_a < 0:
        return None
    folded = np.full((s, new_length), -1, dtype=np.int64)
    for p_out, row in enumerate(rows):
        for j, kk in row:
            folded[p_out, j - j_min] = kk
    rest = op + d * (k - 1) + 1 - pb - pe  # O = s*I + rest - s
    growth = -((s - rest) // s)  # ceil(O/s) - I = ceil((rest - s) / s)
    b = max(growth - new_a + new_length - 1, 0)
    growth = new_a + b - new_length + 1
    crop_end = s * growth - (rest - s)
    assert crop_end >= 0, (s, d, k, pb, pe, op)
    return folded, new_a, b, crop_end, growth


@dataclass(frozen=True)
class _Checked:
    """make_plan's arguments, checked and spread per axis."""

    n: int
    kernel: list
    group: int
    c_in: int
    m_per_group: int
    strides: list
    dilations: list
    out_pad: list
    bias: Optional[np.ndarray]


def _check_arguments(weight: np.ndarray, bias: Optional[np.ndarray], attrs: ConvTransposeAttrs,
                     order: str) -> _Checked:
    """Check the weight, bias, attributes and channel order (PlanError) and spread them per axis."""
    if weight.ndim < 3:
        raise PlanError(
            f"weight has rank {weight.ndim}; ConvTranspose needs at least 3 (C, M/group, k...)")
    n = weight.ndim - 2
    kernel = list(weight.shape[2:])
    if attrs.kernel_shape is not None and len(attrs.kernel_shape) > 0:
        if [int(v) for v in attrs.kernel_shape] != kernel:
            raise PlanError(
                f"kernel_shape {list(attrs.kernel_shape)} disagrees with the weight's {kernel}")
    group = int(attrs.group or 1)
    c_in, m_per_group = int(weight.shape[0]), int(weight.shape[1])
    if group < 1 or c_in % group != 0:
        raise PlanError(f"group {group} does not divide the {c_in} input channels")
    strides = _per_axis(attrs.strides, n, 1, "strides")
    dilations = _per_axis(attrs.dilations, n, 1, "dilations")
    out_pad = _per_axis(attrs.output_padding, n, 0, "output_padding")
    if any(v < 1 for v in strides) or any(v < 1 for v in dilations):
        raise PlanError(f"strides {strides} and dilations {dilations} must be positive")
    for a in range(n):
        if out_pad[a] < 0 or out_pad[a] >= max(strides[a], dilations[a]):
            raise PlanError(
                f"output_padding {out_pad[a]} on axis {a} must be < max(stride, dilation) = "
                f"{max(strides[a], dilations[a])}"
            )
    if order not in ("CRD", "DCR", "LCR"):
        raise PlanError(f"unknown channel order {order!r}")
    if order in ("DCR", "LCR") and group != 1:
        raise PlanError(f"{order} channel order needs group == 1")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (m_per_group * group,):
            raise PlanError(
                f"bias has shape {list(bias.shape)}, expected [{m_per_group * group}]")
    return _Checked(n, kernel, group, c_in, m_per_group, strides, dilations, out_pad, bias)


def _plan_axis(a: int, c: _Checked, pads: tuple, runtime_out: Optional[int], pad_upper: bool,
               fold_crop) -> Tuple[AxisPlan, np.ndarray]:
    """Axis ``a``'s plan and its tap table ``[phase, tap position]`` (-1: no tap)."""
    s, d, k, op = c.strides[a], c.dilations[a], c.kernel[a], c.out_pad[a]
    pb, pe = pads[0][a], pads[1][a]
    table, _, ca, cb, c0, ce, growth = _axis_plan(s, d, k, pb, pe, op)
    if fold_crop and c0:
        folded = _fold_axis(table, ca, c0, s, d, k, pb, pe, op, grow=fold_crop == "always")
        if folded is not None:
            table, ca, cb, ce, growth = folded
            c0 = 0
    used = np.nonzero((table >= 0).any(axis=0))[0]  # positions m that carry a tap in some phase
    dil = 0
    for m in used:
        dil = math.gcd(dil, int(m))
    dil = max(dil, 1)
    table = table[:, ::dil]  # compress: keep positions 0, D, 2D, ... (m = 0 is always used)
    axis = AxisPlan(
        stride=s,
        kernel=k,
        dilation=d,
        pad_begin=pb,
        pad_end=pe,
        output_padding=op,
        taps=table.shape[1],
        conv_dilation=dil,
        conv_pad_begin=ca,
        conv_pad_end=cb,
        crop_begin=c0,
        crop_end=ce,
        growth=growth,
        runtime_out=runtime_out,
        pad_upper=pad_upper and runtime_out is not None,
    )
    return axis, table


def _gather_kernel(weight: np.ndarray, tables: Sequence[np.ndarray], c: _Checked,
                   order: str) -> np.ndarray:
    """The Conv kernel ``[M * phases, C/group, L1, ..., Ln]``: the weight's taps copied by table."""
    n = c.n
    # Gather the taps axis by axis: a zero slice appended at index K stands for "no tap".
    v = weight
    for a, table in enumerate(tables):
        ax = 2 + 2 * a  # after earlier axes were replaced by (phase, tap) pairs
        pad_width = [(0, 0)] * v.ndim
        pad_width[ax] = (0, 1)
        v = np.pad(v, pad_width)
        idx = np.where(table >= 0, table, c.kernel[a])
        v = np.take(v, idx, axis=ax)  # axis ax becomes (s_a, L'_a)
    # v: [C, M/g, s1, L1, s2, L2, ...] -> [g, C/g, M/g, s..., L...]
    c_per_group = c.c_in // c.group
    v = v.reshape((c.group, c_per_group, c.m_per_group) + v.shape[2:])
    phase_axes = [3 + 2 * a for a in range(n)]
    tap_axes = [4 + 2 * a for a in range(n)]
    if order == "CRD":
        perm = [0, 2] + phase_axes + [1] + tap_axes  # [g, M/g, s..., C/g, L...]
    elif order == "DCR":
        perm = phase_axes + [0, 2, 1] + tap_axes  # [s..., g(=1), M, C, L...]
    else:  # LCR: [s_lead, g(=1), M, other s..., C, L...]
        lead = max((a for a in range(n) if c.strides[a] > 1), default=n - 1)
        others = [ax for a, ax in enumerate(phase_axes) if a != lead]
        perm = [phase_axes[lead], 0, 2] + others + [1] + tap_axes
    v = np.ascontiguousarray(v.transpose(perm))
    phases = int(np.prod(c.strides, dtype=np.int64))
    m_out = c.m_per_group * c.group
    return v.reshape((m_out * phases, c_per_group) + tuple(t.shape[1] for t in tables))


def make_plan(
    weight: np.ndarray,
    bias: Optional[np.ndarray],
    attrs: ConvTransposeAttrs,
    input_spatial: Optional[Sequence[Optional[int]]] = None,
    order: str = "CRD",
    fold_crop=False,
) -> SubPixelPlan:
    """Plan the sub-pixel rewrite of one ConvTranspose.

    ``weight`` is the ConvTranspose weight ``[C, M/group, k1, ..., kn]``; ``bias`` is ``[M]`` or
    None. ``order`` is the Conv output channel order, "CRD", "DCR" or "LCR" (DCR and LCR require
    ``group == 1``). ``fold_crop`` folds begin crops into the phases on the axes where that costs no
    tap; ``fold_crop="always"`` also where the shared kernel grows (for per-phase Convs, which trim
    each phase's kernel to its own taps, folding is always free).
    The returned kernel has the weight's dtype and holds the weight's values exactly (taps are
    copied, never computed), so the rewrite is exact up to the runtime's summation order.
    """
    weight = np.asarray(weight)
    c = _check_arguments(weight, bias, attrs, order)
    n = c.n
    pads = resolve_pads(attrs, c.kernel, input_spatial)
    targets = runtime_output_sizes(attrs, n)
    runtime_out = [None] * n
    if targets is not None:
        runtime_out = [t if input_spatial is None or input_spatial[a] is None else None
                       for a, t in enumerate(targets)]
    pad_upper = (attrs.auto_pad or "NOTSET").upper() == "SAME_UPPER"
    axes, tables = [], []
    for a in range(n):
        axis, table = _plan_axis(a, c, pads, runtime_out[a], pad_upper, fold_crop)
        axes.append(axis)
        tables.append(table)

    phases = int(np.prod(c.strides, dtype=np.int64))
    empty = 1
    for t in tables:
        empty *= int((t >= 0).any(axis=1).sum())
    plan = SubPixelPlan(
        axes=tuple(axes),
        group=c.group,
        in_channels=c.c_in,
        out_channels=c.m_per_group * c.group,
        order=order,
        weight=_gather_kernel(weight, tables, c, order),
        bias=None,
        empty_phases=phases - empty,
        tap_tables=tuple(tables),
    )
    if c.bias is not None:
        plan.bias = np.ascontiguousarray(c.bias[plan.row_channels()])
    return plan
