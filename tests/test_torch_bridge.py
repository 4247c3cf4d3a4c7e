"""The PyTorch bridge.

Exact ConvTranspose replacement, ONNX export without ConvTranspose, ICNR sub-pixel layers.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

import deconv2sub.torch_bridge as d2s  # noqa: E402

ort.set_default_logger_severity(3)
TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}

# (ndim, in_ch, out_ch, kernel, stride, padding, output_padding, dilation, groups, bias)
CASES = [
    # 1-D
    (1, 3, 4, 16, 8, 4, 0, 1, 1, True),  # HiFi-GAN style
    (1, 3, 2, 3, 2, 1, 1, 1, 1, True),
    (1, 4, 4, 5, 3, 2, 2, 1, 1, False),  # kernel not a multiple of the stride
    (1, 2, 3, 3, 1, 1, 0, 2, 1, True),  # stride 1, dilation 2: no shuffle, dilated Conv
    (1, 4, 6, 4, 2, 0, 2, 3, 2, True),  # output_padding < dilation but >= stride, groups
    (1, 4, 4, 7, 4, 3, 3, 1, 4, True),  # depthwise
    (1, 2, 2, 1, 3, 0, 0, 1, 1, True),  # kernel smaller than the stride: phases with bias only
    # 2-D
    (2, 3, 5, 4, 2, 1, 0, 1, 1, True),  # DCGAN
    (2, 3, 4, 3, 2, 1, 1, 1, 1, True),  # ENet
    (2, 4, 2, 2, 2, 0, 0, 1, 1, False),  # U-Net
    (2, 4, 6, (3, 5), (2, 3), (1, 2), (1, 2), (1, 2), 2, True),  # unequal everything, groups
    (2, 2, 3, 5, 3, (0, 4), 0, 1, 1, True),
    (2, 2, 2, 3, 2, 2, 0, 1, 1, True),  # padding beyond the kernel reach of one phase
    (2, 4, 4, 4, 2, 1, 0, 1, 4, False),  # depthwise
    (2, 3, 3, 3, 1, 1, 0, 1, 1, True),  # stride 1: a plain Conv
    (2, 2, 3, 3, (1, 2), (1, 0), (0, 1), (2, 1), 1, True),
    (2, 2, 2, 1, 2, 0, 1, 1, 1, True),  # 1x1 kernel, stride 2
    # 3-D
    (3, 2, 3, 2, 2, 0, 0, 1, 1, True),  # 3-D U-Net
    (3, 2, 2, 3, 2, 1, 1, 1, 1, True),
    (3, 4, 2, (3, 2, 4), (1, 2, 3), (1, 0, 2), (0, 1, 2), 1, 2, True),
    (3, 2, 2, 3, 2, 1, 0, 2, 2, False),
]
IDS = [
    f"{c[0]}d-k{c[3]}-s{c[4]}-p{c[5]}-op{c[6]}-d{c[7]}-g{c[8]}-{'b' if c[9] else 'nb'}"
    for c in CASES
]


def _make(case, seed=0):
    ndim, cin, cout, k, s, p, op, d, g, bias = case
    torch.manual_seed(seed)
    m = TRANSPOSED[ndim](
        cin, cout, k, stride=s, padding=p, output_padding=op, dilation=d, groups=g, bias=bias
    )
    return m.eval()


def _input(case, sizes=None, batch=2, seed=1):
    ndim, cin = case[0], case[1]
    sizes = sizes or {1: (7,), 2: (5, 6), 3: (3, 4, 5)}[ndim]
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, cin) + tuple(sizes), generator=g)


def _assert_close(ref: torch.Tensor, got: torch.Tensor, rel=1e-5):
    ref, got = ref.detach(), got.detach()
    assert ref.shape == got.shape, (ref.shape, got.shape)
    scale = max(float(ref.abs().max()), 1e-6)
    err = float((ref.double() - got.double()).abs().max())
    assert err <= rel * scale, f"max abs err {err} vs scale {scale}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_outputs_equal(case):
    """convert_module's replacement equals the ConvTranspose module at two input sizes."""
    m = _make(case)
    sub = d2s.convert_module(m)
    assert isinstance(sub, d2s.SubPixelFromTransposed)
    for sizes in (None, tuple(v + 3 for v in {1: (7,), 2: (5, 6), 3: (3, 4, 5)}[case[0]])):
        x = _input(case, sizes)
        with torch.no_grad():
            _assert_close(m(x), sub(x))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_onnx_export_has_no_convtranspose(case):
    """The converted module exports without ConvTranspose and ORT matches torch."""
    m = _make(case, seed=3)
    sub = d2s.convert_module(m)
    ndim = case[0]
    x = _input(case)
    dyn = {"x": {0: "N", **{2 + a: f"s{a}" for a in range(ndim)}}, "y": {0: "N"}}
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            sub,
            (x,),
            f,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes=dyn,
        )
    model = onnx.load_from_string(f.getvalue())
    ops = {n.op_type for n in model.graph.node}
    assert "ConvTranspose" not in ops and "Conv" in ops
    if ndim == 2 and isinstance(case[4], int) and case[4] > 1:
        assert "DepthToSpace" in ops
    model.ir_version = min(model.ir_version, 8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for sizes in (None, tuple(v + 2 for v in x.shape[2:])):
        xi = _input(case, sizes, batch=3, seed=7)
        with torch.no_grad():
            ref = m(xi)
        _assert_close(ref, torch.from_numpy(sess.run(None, {"x": xi.numpy()})[0]))


def test_float64_is_exact_to_rounding():
    """In float64 the replacement equals the original to rounding."""
    case = (2, 3, 4, (3, 5), (2, 3), (1, 2), (1, 2), (1, 2), 1, True)
    m = _make(case).double()
    sub = d2s.convert_module(m)
    assert sub.conv.weight.dtype == torch.float64
    x = _input(case).double()
    with torch.no_grad():
        _assert_close(m(x), sub(x), rel=1e-12)


def test_unbatched_input_and_gradients():
    """Unbatched inputs work and the input gradients equal the original's."""
    case = (1, 3, 2, 3, 2, 1, 1, 1, 1, True)
    m = _make(case)
    sub = d2s.convert_module(m)
    x = torch.randn(3, 9, requires_grad=True)  # unbatched [C, L]
    _assert_close(m(x), sub(x))
    g1 = torch.autograd.grad(m(x).square().sum(), x)[0]
    g2 = torch.autograd.grad(sub(x).square().sum(), x)[0]
    _assert_close(g1, g2)


class _Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(8, 8, 4, 2, 1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 4, 3, 2, 1, output_padding=1, groups=4),
        )
        self.head = nn.ModuleDict({"out": nn.ConvTranspose2d(4, 1, 2, 2)})

    def forward(self, x):
        return self.head["out"](self.up(self.stem(x)))


def test_convert_module_nested_copy_and_inplace():
    """Nested modules convert into a copy by default, or in place; outputs unchanged."""
    torch.manual_seed(0)
    model = _Decoder().eval()
    x = torch.randn(2, 3, 5, 7)
    with torch.no_grad():
        ref = model(x)
    converted = d2s.convert_module(model)
    assert converted is not model
    # the original is untouched
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules()) == 3
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in converted.modules())
    assert sum(isinstance(m, d2s.SubPixelFromTransposed) for m in converted.modules()) == 3
    with torch.no_grad():
        _assert_close(ref, converted(x))
    same = d2s.convert_module(model, inplace=True)
    assert same is model and not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    with torch.no_grad():
        _assert_close(ref, model(x))


def test_training_flag_kept_and_subclass_with_custom_forward_left_alone():
    """The training flag is kept; a subclass overriding forward is left alone, with a warning."""
    class Custom(nn.ConvTranspose2d):
        def forward(self, x, output_size=None):
            return super().forward(x, output_size) * 2

    model = nn.Sequential(nn.ConvTranspose2d(2, 2, 4, 2, 1), Custom(2, 2, 2, 2)).train()
    with pytest.warns(RuntimeWarning, match="overrides forward"):
        converted = d2s.convert_module(model)
    assert isinstance(converted[0], d2s.SubPixelFromTransposed) and converted[0].training
    assert isinstance(converted[1], Custom)


def test_lazy_and_bad_inputs():
    """Lazy modules convert once materialised; other module types are a TypeError."""
    lazy = nn.LazyConvTranspose2d(3, 4, 2)
    with pytest.raises(ValueError, match="lazy"):
        d2s.SubPixelFromTransposed.from_transposed(lazy)
    with pytest.raises(TypeError):
        d2s.SubPixelFromTransposed.from_transposed(nn.Conv2d(1, 1, 1))
    lazy(torch.randn(1, 2, 3, 3))  # materialised: now convertible
    converted = d2s.convert_module(lazy)
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        _assert_close(lazy(x), converted(x))


@pytest.mark.parametrize("ndim,scale", [(1, 3), (2, 2), (2, (2, 3)), (3, 2), (3, (1, 2, 2))])
def test_pixel_shuffle_nd_roundtrip_and_order(ndim, scale):
    """pixel_shuffle_nd inverts pixel_unshuffle_nd and uses PyTorch's CRD order."""
    s = d2s._tuple(scale, ndim, "scale")
    x = torch.randn((2, 3 * int(np.prod(s))) + (4, 3, 2)[:ndim])
    y = d2s.pixel_shuffle_nd(x, scale)
    assert tuple(y.shape[2:]) == tuple(q * v for q, v in zip(x.shape[2:], s))
    assert torch.equal(d2s.pixel_unshuffle_nd(y, scale), x)
    if ndim == 2 and s[0] == s[1]:
        assert torch.equal(y, torch.nn.functional.pixel_shuffle(x, s[0]))
    # CRD order: channel c*P + phase goes to offset phase (row-major) in each block
    phase = int(np.ravel_multi_index(tuple(v - 1 for v in s), s))
    idx = (0, 2) + tuple(v - 1 for v in s)
    assert y[idx] == x[(0, 2 * int(np.prod(s)) + phase) + (0,) * ndim]


# ---- SubPixelConv + ICNR -------------------------------------------------------------------------


def checkerboard_energy(y: torch.Tensor, scale) -> float:
    """Variance between the phases of each ``scale`` block of ``y``.

    Relative to the mean square of ``y``.

    0 when every block is constant (nearest-neighbour upsampling of something); a checkerboard makes
    it positive. Blocks start at index 0 of every axis.
    """
    n = y.dim() - 2
    s = d2s._tuple(scale, n, "scale")
    blocks = d2s.pixel_unshuffle_nd(y.double(), s)  # [N, C*P, Q...], channel c*P + phase
    blocks = blocks.reshape(y.shape[0], y.shape[1], int(np.prod(s)), *blocks.shape[2:])
    return float(
        blocks.var(dim=2, unbiased=False).mean() / y.double().square().mean().clamp_min(1e-30)
    )


def _smooth_inputs(ndim, channels=4, size=8):
    axes = torch.meshgrid(*[torch.linspace(0, 1, size)] * ndim, indexing="ij")
    ramp = sum((a + 1) * ax for a, ax in enumerate(axes))
    smooth = torch.stack([torch.sin(ramp + c) for c in range(channels)])[None]
    return [torch.ones((1, channels) + (size,) * ndim), smooth]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_icnr_is_checkerboard_free_and_convtranspose_is_not(seed):
    """ICNR sub-pixel convs show no checkerboard; ConvTranspose and plain ones do."""
    torch.manual_seed(seed)
    sub = d2s.SubPixelConv2d(4, 3, kernel_size=3, scale=2).eval()
    deconv = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1).eval()
    plain = d2s.SubPixelConv2d(4, 3, kernel_size=3, scale=2, icnr=False).eval()
    with torch.no_grad():
        for x in _smooth_inputs(2):
            y_sub, y_deconv, y_plain = sub(x), deconv(x), plain(x)
            assert y_sub.shape == y_deconv.shape == (1, 3, 16, 16)
            e_sub = checkerboard_energy(y_sub, 2)
            e_deconv = checkerboard_energy(y_deconv, 2)
            e_plain = checkerboard_energy(y_plain, 2)
            assert e_sub < 1e-10, e_sub
            # the measure does see checkerboards: a randomly initialised ConvTranspose and a
            # sub-pixel conv without ICNR both have one
            assert e_deconv > 1e-3, e_deconv
            assert e_plain > 1e-3, e_plain


@pytest.mark.parametrize("ndim,scale", [(1, 4), (2, (2, 3)), (3, 2)])
def test_icnr_nd_equals_nearest_upsampling_of_a_conv(ndim, scale):
    """An ICNR-initialised SubPixelConv is nearest upsampling of a Conv, in 1-D to 3-D."""
    torch.manual_seed(0)
    sub = d2s.SubPixelConv(ndim, 3, 2, kernel_size=3, scale=scale).eval()
    x = torch.randn((2, 3) + (5, 4, 3)[:ndim])
    s = d2s._tuple(scale, ndim, "scale")
    phases = int(np.prod(s))
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim](3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(sub.conv.weight[::phases])
        conv.bias.copy_(sub.conv.bias[::phases])
        ref = nn.functional.interpolate(conv(x), scale_factor=s, mode="nearest")
        y = sub(x)
    _assert_close(ref, y)
    assert checkerboard_energy(y, scale) < 1e-10
    # the sub-kernels are trained independently afterwards: every phase gets a gradient
    sub.train()
    sub(x).pow(2).sum().backward()
    assert sub.conv.weight.grad.abs().sum() > 0


def test_subpixelconv_exports_to_conv_depthtospace():
    """SubPixelConv2d exports as Conv + DepthToSpace, and ORT matches torch."""
    torch.manual_seed(0)
    model = nn.Sequential(d2s.SubPixelConv2d(3, 4, 3, 2), nn.ReLU(), d2s.SubPixelConv2d(4, 2, 3, 2))
    x = torch.randn(1, 3, 6, 6)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), f, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}})
    m = onnx.load_from_string(f.getvalue())
    ops = [n.op_type for n in m.graph.node]
    assert "DepthToSpace" in ops and "ConvTranspose" not in ops
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x2 = torch.randn(2, 3, 5, 7)
    with torch.no_grad():
        _assert_close(model(x2), torch.from_numpy(sess.run(None, {"x": x2.numpy()})[0]))


# ---- torch stays optional ------------------------------------------------------------------------


def test_import_deconv2sub_without_torch():
    """deconv2sub imports and converts with torch unavailable."""
    code = r"""
import sys
sys.modules['torch'] = None  # any 'import torch' now raises ImportError
import numpy as np
from onnx import helper, numpy_helper, TensorProto
import deconv2sub
w = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
g = helper.make_graph(
    [helper.make_node('ConvTranspose', ['X', 'W'], ['Y'], strides=[2, 2], pads=[1, 1, 1, 1])], 'g',
    [helper.make_tensor_value_info('X', TensorProto.FLOAT, [1, 1, 4, 4])],
    [helper.make_tensor_value_info('Y', TensorProto.FLOAT, [1, 1, 8, 8])],
    [numpy_helper.from_array(w, 'W')])
m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
out, report = deconv2sub.convert_model(m)
assert [n.status for n in report.nodes] == ['rewritten'], report.nodes
assert 'ConvTranspose' not in [n.op_type for n in out.graph.node]
assert sys.modules['torch'] is None
try:
    import deconv2sub.torch_bridge
except ImportError:
    pass
else:
    raise SystemExit('deconv2sub.torch_bridge imported without torch')
print('ok')
"""
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
