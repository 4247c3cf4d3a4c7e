"""PyTorch bridge: sub-pixel modules and an in-model ConvTranspose rewrite.

This module needs PyTorch (the optional ``torch`` extra); ``import deconv2sub`` never imports it.

* :func:`convert_module` replaces every ``nn.ConvTranspose{1,2,3}d`` of a model by a
  :class:`SubPixelFromTransposed` that computes exactly the same function (Conv with the re-arranged
  kernel → periodic shuffle → crop). The kernel comes from
  :func:`deconv2sub.plan.subpixel.make_plan`, the same arithmetic the ONNX pass uses, so
  ``torch.onnx.export`` of the converted model has no ConvTranspose.
* :class:`SubPixelConv` (aliases :class:`SubPixelConv1d`, :class:`SubPixelConv2d`,
  :class:`SubPixelConv3d`) is a trainable sub-pixel upsampling layer (Shi et al. 2016) with ICNR
  initialisation (Aitken et al. 2017): at initialisation every phase has the same kernel, so the
  layer is a convolution followed by nearest-neighbour upsampling and has no checkerboard artefact.

Example::

    import deconv2sub.torch_bridge as d2s
    model = d2s.convert_module(model)            # a copy; inplace=True edits the model itself
    up = d2s.SubPixelConv2d(64, 32, kernel_size=3, scale=2)
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .plan.subpixel import ConvTransposeAttrs, SubPixelPlan, make_plan

__all__ = [
    "convert_module",
    "SubPixelFromTransposed",
    "SubPixelConv",
    "SubPixelConv1d",
    "SubPixelConv2d",
    "SubPixelConv3d",
    "pixel_shuffle_nd",
    "pixel_unshuffle_nd",
    "icnr_",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
IntOrTuple = Union[int, Sequence[int]]


def _tuple(value: IntOrTuple, n: int, name: str) -> Tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries, expected {n}")
    return value


def pixel_shuffle_nd(x: torch.Tensor, scale: IntOrTuple) -> torch.Tensor:
    """N-d periodic shuffle: ``[N, C*s1*...*sn, Q1, ..., Qn] -> [N, C, Q1*s1, ..., Qn*sn]``.

    Channel ``c*P + phase`` ("CRD", phases row-major over ``(p1, ..., pn)``) lands at
    ``(Q1*s1 + p1, ...)``: the order of ``torch.nn.functional.pixel_shuffle``, which is used for the
    2-D equal-scale case.
    """
    n = x.dim() - 2
    s = _tuple(scale, n, "scale")
    if all(v == 1 for v in s):
        return x
    if n == 2 and s[0] == s[1]:
        return F.pixel_shuffle(x, s[0])
    batch = x.shape[0]
    q = list(x.shape[2:])
    # Traced for export, -1 stands for the channel count (no size arithmetic in the graph); eagerly
    # the count is explicit so that an empty batch still reshapes.
    channels = (
        -1
        if (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
        else x.shape[1] // math.prod(s)
    )
    y = x.reshape([batch, channels, *s, *q])
    perm = [0, 1]
    for a in range(n):
        perm += [2 + n + a, 2 + a]  # Q_a then s_a
    y = y.permute(perm)
    return y.reshape([batch, channels] + [q[a] * s[a] for a in range(n)])


def pixel_unshuffle_nd(x: torch.Tensor, scale: IntOrTuple) -> torch.Tensor:
    """Inverse of :func:`pixel_shuffle_nd`."""
    n = x.dim() - 2
    s = _tuple(scale, n, "scale")
    if all(v == 1 for v in s):
        return x
    batch, channels = x.shape[0], x.shape[1]
    q = [x.shape[2 + a] // s[a] for a in range(n)]
    shape = [batch, channels]
    for a in range(n):
        shape += [q[a], s[a]]
    y = x.reshape(shape)
    perm = [0, 1] + [3 + 2 * a for a in range(n)] + [2 + 2 * a for a in range(n)]
    return y.permute(perm).reshape([batch, channels * math.prod(s)] + q)


# --------------------------------------------------------------------------------------------------
# Exact replacement of nn.ConvTranspose{1,2,3}d
# --------------------------------------------------------------------------------------------------


class SubPixelFromTransposed(nn.Module):
    """Conv → periodic shuffle → crop, equal to a given ``nn.ConvTranspose{1,2,3}d``.

    Build it with :meth:`from_transposed`. Only the default ``forward(input)`` of ConvTranspose is
    mirrored (no ``output_size`` argument). Unbatched inputs ``[C, L...]`` work like in PyTorch.

    The Conv's weight holds the original kernel's values (taps are copied, never computed), with
    zeros where a phase receives no tap; training the converted module does not keep those zeros, so
    it is meant for inference and export. ``plan`` (a
    :class:`deconv2sub.plan.subpixel.SubPixelPlan`) records the geometry.
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        out_channels: int,
        strides: Sequence[int],
        conv_kernel: Sequence[int],
        conv_dilations: Sequence[int],
        conv_pads: Sequence[int],
        crops: Sequence[Tuple[int, int]],
        groups: int = 1,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        """Build the Conv and crops of a planned ConvTranspose (weights set by the caller)."""
        super().__init__()
        self.ndim = int(ndim)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.strides = tuple(int(v) for v in strides)
        self.groups = int(groups)
        begins = [int(v) for v in conv_pads[: self.ndim]]
        ends = [int(v) for v in conv_pads[self.ndim :]]
        self.symmetric_pad = begins == ends
        # F.pad lists pads from the last axis backwards: (begin_n, end_n, ..., begin_1, end_1).
        self.pad = tuple(v for a in reversed(range(self.ndim)) for v in (begins[a], ends[a]))
        self.crops = tuple((int(b), int(e)) for b, e in crops)
        phases = math.prod(self.strides)
        self.conv = _CONV[self.ndim](
            in_channels,
            out_channels * phases,
            kernel_size=tuple(int(v) for v in conv_kernel),
            stride=1,
            padding=tuple(begins) if self.symmetric_pad else 0,
            dilation=tuple(int(v) for v in conv_dilations),
            groups=groups,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self.plan: Optional[SubPixelPlan] = None

    @classmethod
    def from_transposed(cls, module: nn.Module) -> "SubPixelFromTransposed":
        """The exact sub-pixel equivalent of an ``nn.ConvTranspose{1,2,3}d``.

        Weights copied, same device/dtype.
        """
        if not isinstance(module, _TRANSPOSED):
            raise TypeError(f"expected nn.ConvTranspose1d/2d/3d, got {type(module).__name__}")
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            raise ValueError(
                "lazy ConvTranspose is not initialised yet: run one forward pass first"
            )
        if module.padding_mode != "zeros":
            raise ValueError(
                f"padding_mode {module.padding_mode!r} is not supported (only 'zeros')"
            )
        if isinstance(module.padding, str):
            raise ValueError(f"string padding {module.padding!r} is not supported")
        n = module.weight.dim() - 2
        weight = module.weight.detach()
        dtype, device = weight.dtype, weight.device

        def to_numpy(t: torch.Tensor) -> np.ndarray:
            t = t.detach().cpu()
            if t.dtype in (torch.bfloat16,) or not t.dtype.is_floating_point:
                t = t.float()  # exact for bfloat16; the taps are only moved around
            return t.numpy()

        bias = None if module.bias is None else to_numpy(module.bias)
        padding = _tuple(module.padding, n, "padding")
        attrs = ConvTransposeAttrs(
            strides=_tuple(module.stride, n, "stride"),
            dilations=_tuple(module.dilation, n, "dilation"),
            pads=list(padding) + list(padding),
            output_padding=_tuple(module.output_padding, n, "output_padding"),
            group=int(module.groups),
        )
        plan = make_plan(to_numpy(weight), bias, attrs, order="CRD")
        out = cls(
            n,
            plan.in_channels,
            plan.out_channels,
            plan.strides,
            plan.conv_kernel,
            plan.conv_dilations,
            plan.conv_pads,
            [(a.crop_begin, a.crop_end) for a in plan.axes],
            groups=plan.group,
            bias=plan.bias is not None,
            device=device,
            dtype=dtype,
        )
        with torch.no_grad():
            out.conv.weight.copy_(
                torch.from_numpy(np.ascontiguousarray(plan.weight)).to(device=device, dtype=dtype)
            )
            if plan.bias is not None:
                out.conv.bias.copy_(
                    torch.from_numpy(np.ascontiguousarray(plan.bias)).to(device=device, dtype=dtype)
                )
        out.plan = plan
        out.train(module.training)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv, periodic shuffle and crop of ``x`` (batched or not)."""
        unbatched = x.dim() == self.ndim + 1
        if unbatched:
            x = x.unsqueeze(0)
        if not self.symmetric_pad and any(self.pad):
            x = F.pad(x, self.pad)
        y = self.conv(x)
        y = pixel_shuffle_nd(y, self.strides)
        if any(b or e for b, e in self.crops):
            index = [slice(None), slice(None)] + [
                slice(b, -e if e else None) for b, e in self.crops
            ]
            y = y[tuple(index)]
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        """Strides, padding and crops, for ``repr``."""
        pad = self.pad if not self.symmetric_pad else "in conv"
        return f"strides={self.strides}, pad={pad}, crops={self.crops}"


def _replaceable(module: nn.Module) -> bool:
    if not isinstance(module, _TRANSPOSED):
        return False
    base = next(c for c in _TRANSPOSED if isinstance(module, c))
    if type(module).forward is not base.forward:
        warnings.warn(
            f"{type(module).__name__} overrides forward(); left as it is",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def convert_module(module: nn.Module, inplace: bool = False) -> nn.Module:
    """Replace every ``nn.ConvTranspose{1,2,3}d`` in ``module`` by :class:`SubPixelFromTransposed`.

    The replacement is exact.

    Returns the converted module: a deep copy unless ``inplace`` (then ``module`` itself is edited,
    and returned unless it is a ConvTranspose itself, which cannot replace itself). Subclasses that
    override ``forward`` are left alone with a warning. Outputs equal the original's up to float
    summation order.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    if _replaceable(module):
        return SubPixelFromTransposed.from_transposed(module)
    root = module if inplace else copy.deepcopy(module)
    targets = [(name, m) for name, m in root.named_modules() if name and _replaceable(m)]
    for name, m in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, attr, SubPixelFromTransposed.from_transposed(m))
    return root


# --------------------------------------------------------------------------------------------------
# Trainable sub-pixel convolution with ICNR initialisation
# --------------------------------------------------------------------------------------------------


def icnr_(weight: torch.Tensor, scale: IntOrTuple, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR initialisation in place.

    Aitken et al. 2017, "Checkerboard artifact free sub-pixel convolution".

    ``weight`` is ``[out*P, in/groups, k...]`` with ``P = prod(scale)`` phases in CRD order (channel
    ``c*P + phase``). One sub-kernel ``[out, in/groups, k...]`` is initialised with ``init`` and
    copied to every phase, so the shuffled output is nearest-neighbour upsampling of one
    convolution.
    """
    n = weight.dim() - 2
    phases = math.prod(_tuple(scale, n, "scale"))
    if weight.shape[0] % phases:
        raise ValueError(f"{weight.shape[0]} output channels are not a multiple of {phases} phases")
    with torch.no_grad():
        sub = torch.empty(
            (weight.shape[0] // phases,) + tuple(weight.shape[1:]),
            dtype=weight.dtype,
            device=weight.device,
        )
        init(sub)
        weight.copy_(sub.repeat_interleave(phases, dim=0))
    return weight


class SubPixelConv(nn.Module):
    """Sub-pixel upsampling: ConvNd(in, out*prod(scale), kernel) → periodic shuffle by ``scale``.

    ``padding`` defaults to ``"same"``-style ``(k - 1) * dilation // 2`` per axis (equal size for
    odd kernels), so the output is ``scale`` times the input. With ``icnr=True`` (default) the
    weight is ICNR initialised and the bias zeroed (a per-phase bias would itself be a
    checkerboard).
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        scale: IntOrTuple = 2,
        padding: Optional[IntOrTuple] = None,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        icnr: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        """Build the Conv with ``prod(scale)`` times the output channels."""
        super().__init__()
        if ndim not in _CONV:
            raise ValueError(f"ndim must be 1, 2 or 3, got {ndim}")
        self.ndim = ndim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale = _tuple(scale, ndim, "scale")
        if any(v < 1 for v in self.scale):
            raise ValueError(f"scale {self.scale} must be positive")
        kernel = _tuple(kernel_size, ndim, "kernel_size")
        dil = _tuple(dilation, ndim, "dilation")
        if padding is None:
            padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dil))
        self.conv = _CONV[ndim](
            in_channels,
            out_channels * math.prod(self.scale),
            kernel_size=kernel,
            padding=padding,
            dilation=dil,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self.icnr = icnr
        if icnr:
            self.reset_icnr()

    def reset_icnr(self) -> None:
        """Re-initialise the weight with ICNR and zero the bias."""
        icnr_(self.conv.weight, self.scale)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv of ``x``, then the periodic shuffle by ``scale``."""
        return pixel_shuffle_nd(self.conv(x), self.scale)

    def extra_repr(self) -> str:
        """Scale and ICNR flag, for ``repr``."""
        return f"scale={self.scale}, icnr={self.icnr}"


class SubPixelConv1d(SubPixelConv):
    """A 1-D :class:`SubPixelConv`."""
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        scale: IntOrTuple = 2,
        **kwargs,
    ):
        """See :class:`SubPixelConv`; ``ndim`` is 1."""
        super().__init__(1, in_channels, out_channels, kernel_size, scale, **kwargs)


class SubPixelConv2d(SubPixelConv):
    """A 2-D :class:`SubPixelConv`."""
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        scale: IntOrTuple = 2,
        **kwargs,
    ):
        """See :class:`SubPixelConv`; ``ndim`` is 2."""
        super().__init__(2, in_channels, out_channels, kernel_size, scale, **kwargs)


class SubPixelConv3d(SubPixelConv):
    """A 3-D :class:`SubPixelConv`."""
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        scale: IntOrTuple = 2,
        **kwargs,
    ):
        """See :class:`SubPixelConv`; ``ndim`` is 3."""
        super().__init__(3, in_channels, out_channels, kernel_size, scale, **kwargs)
