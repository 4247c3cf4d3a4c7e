#!/usr/bin/env python3
"""(Re)export every sample model of samples/ to ONNX, deterministically.

Random init from a fixed seed.

    python samples/export_samples.py                 # writes samples/*.onnx
    python samples/export_samples.py -o /tmp/x       # somewhere else
    python samples/export_samples.py dcgan_generator # only some

Every file: opset 17, IR version 8, legacy TorchScript exporter (``dynamo=False``), eval mode, < 2
MB. No weights are downloaded: the architectures are written here with small channel counts and
random weights; BatchNorm running statistics are randomised too so that they are not identities.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import onnx
import torch
from torch import nn

OPSET = 17
IR_VERSION = 8
HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Sample:
    """One sample model: its builder, example input shapes and dynamic axes."""
    name: str
    description: str
    build: Callable[[], nn.Module]
    inputs: Dict[str, Tuple[int, ...]]  # example input shapes, in forward() order
    dynamic_axes: Dict[str, Dict[int, str]] = field(default_factory=dict)
    outputs: List[str] = field(default_factory=lambda: ["y"])


def _randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


# ---- seed_example: the example of the issue ------------------------------------------------------


def build_seed_example() -> nn.Module:
    """One ConvTranspose, kernel (1,1,4,4), stride 2, padding 1: (1,1,4,4) -> (1,1,8,8).

    The rewrite gives a Conv with kernel (4,1,2,2) (4 = r^2 phases), DepthToSpace(2) and a crop of
    1.
    """
    return nn.ConvTranspose2d(1, 1, kernel_size=4, stride=2, padding=1, bias=False)


# ---- DCGAN generator -----------------------------------------------------------------------------


class DCGANGenerator(nn.Module):
    """Radford et al. 2015, scaled down: z (N,16,1,1) -> 4x4 -> 8x8 -> 16x16 -> 32x32 RGB."""

    def __init__(self, nz: int = 16, ngf: int = 16, nc: int = 3):
        """Latent ``nz`` channels to ``nc`` channels through four up-convolutions."""
        super().__init__()

        def up(cin, cout, k, s, p):
            return [
                nn.ConvTranspose2d(cin, cout, k, s, p, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(True),
            ]

        self.main = nn.Sequential(
            *up(nz, ngf * 4, 4, 1, 0),
            *up(ngf * 4, ngf * 2, 4, 2, 1),
            *up(ngf * 2, ngf, 4, 2, 1),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z):
        """The generated image for latent ``z``."""
        return self.main(z)


# ---- convolutional autoencoder (MNIST-sized) -----------------------------------------------------


class ConvAutoencoder(nn.Module):
    """28x28 -> 14x14 -> 7x7 -> (ConvTranspose k3 s2 p1 op1) 14x14 -> 28x28."""

    def __init__(self):
        """Two stride-2 Convs down, two ConvTranspose up."""
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
        )

    def forward(self, x):
        """The reconstruction of ``x``."""
        return self.decoder(self.encoder(x))


# ---- U-Net with k2 s2 up-convolutions ------------------------------------------------------------


def _double_conv(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
    )


class UNet(nn.Module):
    """Ronneberger et al. 2015, 3 levels.

    Up blocks are ConvTranspose k2 s2, concat skip, double conv.
    """

    def __init__(self, cin: int = 3, classes: int = 2, base: int = 8):
        """Three down levels of ``base``-multiple channels and three up blocks."""
        super().__init__()
        c = [base, base * 2, base * 4, base * 8]
        self.inc = _double_conv(cin, c[0])
        self.downs = nn.ModuleList([_double_conv(c[i], c[i + 1]) for i in range(3)])
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2) for i in reversed(range(3))]
        )
        self.up_convs = nn.ModuleList([_double_conv(c[i] * 2, c[i]) for i in reversed(range(3))])
        self.head = nn.Conv2d(c[0], classes, 1)

    def forward(self, x):
        """Per-pixel class scores for ``x``."""
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(self.pool(skips[-1])))
        y = skips.pop()
        for up, conv in zip(self.ups, self.up_convs):
            y = conv(torch.cat([skips.pop(), up(y)], dim=1))
        return self.head(y)


# ---- ENet decoder --------------------------------------------------------------------------------


class ENetUpsamplingBottleneck(nn.Module):
    """Paszke et al. 2016 upsampling bottleneck.

    The extension branch has ConvTranspose k3 s2 p1 op1.

    The main branch is a 1x1 conv + BN followed by nearest upsampling (the paper unpools with the
    encoder's max-pool indices; a decoder exported on its own has no indices).
    """

    def __init__(self, cin: int, cout: int, ratio: int = 4):
        """Main branch (1x1 + unpool) and the ConvTranspose extension branch."""
        super().__init__()
        mid = cin // ratio
        self.main = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.ext = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.PReLU(),
            nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.PReLU(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.act = nn.PReLU()

    def forward(self, x):
        """Sum of both branches of ``x``, activated."""
        return self.act(self.up(self.main(x)) + self.ext(x))


class ENetRegular(nn.Module):
    """ENet regular bottleneck: 1x1 reduce, 3x3, 1x1 expand, residual."""
    def __init__(self, c: int, ratio: int = 4):
        """Layers for ``c`` channels, reduced by ``ratio`` inside."""
        super().__init__()
        mid = c // ratio
        self.ext = nn.Sequential(
            nn.Conv2d(c, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.PReLU(),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.PReLU(),
            nn.Conv2d(mid, c, 1, bias=False), nn.BatchNorm2d(c),
        )
        self.act = nn.PReLU()

    def forward(self, x):
        """``x`` plus its bottleneck branch, activated."""
        return self.act(x + self.ext(x))


class ENetDecoder(nn.Module):
    """ENet stages 4-5 and the final full convolution (ConvTranspose k3 s2 p1 op1).

    1/8 -> full size.
    """

    def __init__(self, cin: int = 32, classes: int = 5):
        """Stages 4 and 5 and the full convolution to ``classes`` channels."""
        super().__init__()
        self.stage4 = nn.Sequential(ENetUpsamplingBottleneck(cin, 16), ENetRegular(16))
        self.stage5 = nn.Sequential(ENetUpsamplingBottleneck(16, 8), ENetRegular(8))
        self.fullconv = nn.ConvTranspose2d(
            8, classes, 3, stride=2, padding=1, output_padding=1, bias=False
        )

    def forward(self, x):
        """Class scores at full size for the 1/8-size features ``x``."""
        return self.fullconv(self.stage5(self.stage4(x)))


# ---- HiFi-GAN upsampler (1-D) --------------------------------------------------------------------


class HiFiGANResBlock(nn.Module):
    """HiFi-GAN residual block: dilated Conv1d layers with LeakyReLU."""
    def __init__(self, c: int, k: int = 3, dilations=(1, 3)):
        """One Conv1d of kernel ``k`` per dilation."""
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv1d(c, c, k, dilation=d, padding=d * (k - 1) // 2) for d in dilations]
        )

    def forward(self, x):
        """``x`` with every dilated Conv's residual added."""
        for conv in self.convs:
            x = x + conv(nn.functional.leaky_relu(x, 0.1))
        return x


class HiFiGANUpsampler(nn.Module):
    """Kong et al. 2020 generator, scaled down: mel (N,16,T) -> (N,1,16*T).

    ConvTranspose1d k16 s8 p4, then k4 s2 p1.
    """

    def __init__(self, mels: int = 16, ch: int = 32):
        """Pre-Conv, two up-convolutions with residual blocks, post-Conv."""
        super().__init__()
        self.conv_pre = nn.Conv1d(mels, ch, 7, padding=3)
        self.ups = nn.ModuleList(
            [
                nn.ConvTranspose1d(ch, ch // 2, 16, 8, 4),
                nn.ConvTranspose1d(ch // 2, ch // 4, 4, 2, 1),
            ]
        )
        self.resblocks = nn.ModuleList([HiFiGANResBlock(ch // 2), HiFiGANResBlock(ch // 4)])
        self.conv_post = nn.Conv1d(ch // 4, 1, 7, padding=3)

    def forward(self, mel):
        """The waveform for mel spectrogram ``mel``."""
        x = self.conv_pre(mel)
        for up, res in zip(self.ups, self.resblocks):
            x = res(up(nn.functional.leaky_relu(x, 0.1)))
        return torch.tanh(self.conv_post(nn.functional.leaky_relu(x, 0.1)))


# ---- 3-D U-Net up block --------------------------------------------------------------------------


class UNet3DUpBlock(nn.Module):
    """Çiçek et al. 2016 synthesis block: ConvTranspose3d k2 s2, concat skip, 2x Conv3d+BN+ReLU."""

    def __init__(self, cin: int = 16, cskip: int = 8, cout: int = 8):
        """The ConvTranspose3d and the two Conv3d + BN + ReLU."""
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cin, 2, stride=2)
        self.conv = nn.Sequential(
            nn.Conv3d(cin + cskip, cout, 3, padding=1, bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(True),
        )

    def forward(self, x, skip):
        """``x`` upsampled, concatenated with ``skip``, convolved."""
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


# ---- grouped / depthwise -------------------------------------------------------------------------


class GroupedUpsampler(nn.Module):
    """Grouped (g=4) and depthwise (g=C) ConvTranspose2d, then a 1x1 conv.

    (N,8,H,W) -> (N,3,4H,4W).
    """

    def __init__(self, c: int = 8):
        """Grouped and depthwise ConvTranspose2d, then a 1x1 head."""
        super().__init__()
        self.grouped = nn.ConvTranspose2d(c, 2 * c, 4, stride=2, padding=1, groups=4)
        self.depthwise = nn.ConvTranspose2d(
            2 * c, 2 * c, 3, stride=2, padding=1, output_padding=1, groups=2 * c
        )
        self.head = nn.Conv2d(2 * c, 3, 1)

    def forward(self, x):
        """``x`` upsampled 4x to 3 channels."""
        return self.head(torch.relu(self.depthwise(torch.relu(self.grouped(x)))))


SAMPLES: List[Sample] = [
    Sample(
        "seed_example",
        "the issue's example: ConvTranspose k4 s2 p1, (1,1,4,4) -> (1,1,8,8)",
        build_seed_example,
        {"x": (1, 1, 4, 4)},
    ),
    Sample(
        "dcgan_generator",
        "DCGAN generator, latent 16 -> 32x32 RGB",
        DCGANGenerator,
        {"z": (1, 16, 1, 1)},
        {"z": {0: "N"}, "y": {0: "N"}},
    ),
    Sample(
        "autoencoder",
        "conv autoencoder for 28x28 MNIST",
        ConvAutoencoder,
        {"x": (1, 1, 28, 28)},
        {"x": {0: "N"}, "y": {0: "N"}},
    ),
    Sample(
        "unet_decoder",
        "U-Net (3 levels), k2 s2 up-convolutions + skip concat",
        UNet,
        {"x": (1, 3, 32, 32)},
        {"x": {0: "N", 2: "H", 3: "W"}, "y": {0: "N", 2: "H", 3: "W"}},
    ),
    Sample(
        "enet_decoder",
        "ENet decoder, ConvTranspose k3 s2 p1 op1",
        ENetDecoder,
        {"x": (1, 32, 8, 8)},
        {"x": {0: "N", 2: "H", 3: "W"}, "y": {0: "N", 2: "H8", 3: "W8"}},
    ),
    Sample(
        "hifigan_upsampler",
        "HiFi-GAN-style 1-D upsampler, k16 s8 p4 and k4 s2 p1",
        HiFiGANUpsampler,
        {"mel": (1, 16, 20)},
        {"mel": {0: "N", 2: "T"}, "y": {0: "N", 2: "T16"}},
    ),
    Sample(
        "unet3d_upblock",
        "3-D U-Net up block, ConvTranspose3d k2 s2 + skip",
        UNet3DUpBlock,
        {"x": (1, 16, 4, 4, 4), "skip": (1, 8, 8, 8, 8)},
        {
            "x": {0: "N", 2: "D", 3: "H", 4: "W"},
            "skip": {0: "N", 2: "D2", 3: "H2", 4: "W2"},
            "y": {0: "N", 2: "D2", 3: "H2", 4: "W2"},
        },
    ),
    Sample(
        "grouped_upsampler",
        "grouped (g=4) and depthwise ConvTranspose2d",
        GroupedUpsampler,
        {"x": (1, 8, 8, 8)},
        {"x": {0: "N", 2: "H", 3: "W"}, "y": {0: "N", 2: "H4", 3: "W4"}},
    ),
]


def export(sample: Sample, out_dir: str, seed: int = 0) -> str:
    """Export ``sample`` (seeded random weights) to ``out_dir``; return the file path."""
    torch.manual_seed(seed)
    model = _randomise_batchnorm(sample.build()).eval()
    g = torch.Generator().manual_seed(seed + 1)
    args = tuple(torch.randn(shape, generator=g) for shape in sample.inputs.values())
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            f,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(sample.inputs),
            output_names=sample.outputs,
            dynamic_axes=sample.dynamic_axes or None,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(f.getvalue())
    proto.ir_version = IR_VERSION
    proto.doc_string = (
        f"deconv2sub sample '{sample.name}': {sample.description} (random weights, seed {seed})"
    )
    onnx.checker.check_model(proto)
    path = os.path.join(out_dir, f"{sample.name}.onnx")
    onnx.save(proto, path)
    return path


def main(argv=None) -> int:
    """Export the samples named on the command line (all by default); return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="samples to export (default: all)")
    parser.add_argument("-o", "--out-dir", default=HERE)
    args = parser.parse_args(argv)
    known = {s.name: s for s in SAMPLES}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown sample(s) {unknown}; known: {sorted(known)}")
    os.makedirs(args.out_dir, exist_ok=True)
    for sample in SAMPLES:
        if args.names and sample.name not in args.names:
            continue
        path = export(sample, args.out_dir)
        proto = onnx.load(path)
        count = sum(n.op_type == "ConvTranspose" for n in proto.graph.node)
        print(f"{path}: {count} ConvTranspose, {os.path.getsize(path) / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
