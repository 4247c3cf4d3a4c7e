#!/usr/bin/env python3
"""Train a small autoencoder whose decoder upsamples with sub-pixel convolutions (ICNR initialised).

    python samples/train_subpixel_autoencoder.py # writes out/subpixel_autoencoder.{png,onnx} python
    samples/train_subpixel_autoencoder.py --epochs 20 --size 32 -o /tmp/ae

Data: scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``, offline, 1797
images), scaled to [0, 1] and upscaled bilinearly to 16x16 (or 32x32). The decoder uses
:class:`deconv2sub.torch_bridge.SubPixelConv2d` (Conv → pixel shuffle) instead of ConvTranspose, so
the exported ONNX has Conv + DepthToSpace and no ConvTranspose; ICNR makes the untrained decoder
checkerboard-free.

Prints the reconstruction loss per epoch, saves a PNG (top rows: held-out inputs, bottom rows: their
reconstructions) and exports the trained model to ONNX (opset 17, IR 8, dynamic batch).
Needs torch and scikit-learn (``pip install -e '.[torch,samples]'``); matplotlib is not needed.
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import sys
import time
import warnings
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

try:
    import deconv2sub.torch_bridge as d2s
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import deconv2sub.torch_bridge as d2s


def load_digits_tensor(size: int) -> torch.Tensor:
    """scikit-learn's 8x8 digits as ``(N, 1, size, size)`` in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "this sample needs scikit-learn: pip install scikit-learn (or the 'samples' extra)"
        ) from err
    images = load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    x = torch.from_numpy(images)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x


class SubPixelAutoencoder(nn.Module):
    """size -> size/4 (strided convs) -> size (two ICNR sub-pixel convs, x2 each)."""

    def __init__(self, base: int = 16, latent: int = 8):
        """Encoder to ``latent`` channels at 1/4 size, decoder of two sub-pixel convs."""
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, base, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(base, 2 * base, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * base, latent, 1),  # bottleneck: 8 channels at 1/4 resolution
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent, 2 * base, 3, padding=1), nn.ReLU(),
            d2s.SubPixelConv2d(2 * base, base, kernel_size=3, scale=2), nn.ReLU(),
            d2s.SubPixelConv2d(base, base, kernel_size=3, scale=2), nn.ReLU(),
            nn.Conv2d(base, 1, 3, padding=1), nn.Sigmoid(),
        )

    def forward(self, x):
        """The reconstruction of ``x``."""
        return self.decoder(self.encoder(x))


# ---- a tiny PNG writer (grayscale, 8 bit), so matplotlib/Pillow are not needed -------------------


def write_png(path: str, image: np.ndarray) -> None:
    """Write a 2-D array with values in [0, 1] as an 8-bit grayscale PNG."""
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    height, width = pixels.shape
    # filter 0 per scanline
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bit, grayscale
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def grid(
    inputs: np.ndarray, recons: np.ndarray, per_row: int = 10, zoom: int = 4, gap: int = 2
) -> np.ndarray:
    """Rows of inputs, each followed by the row of their reconstructions.

    Pixels zoomed for viewing.
    """
    n, size = inputs.shape[0], inputs.shape[-1]
    rows = []
    for start in range(0, n, per_row):
        for j, batch in enumerate(
            (inputs[start : start + per_row], recons[start : start + per_row])
        ):
            tiles = [np.kron(img, np.ones((zoom, zoom))) for img in batch]
            row = np.ones((size * zoom, per_row * (size * zoom + gap) - gap))
            for i, t in enumerate(tiles):
                row[:, i * (size * zoom + gap) : i * (size * zoom + gap) + size * zoom] = t
            rows.append(row)
            rows.append(np.full((gap if j == 0 else 4 * gap, row.shape[1]), 1.0 if j == 0 else 0.5))
    return np.concatenate(rows[:-1], axis=0)


def main(argv=None) -> int:
    """Train, print the losses, write the reconstructions (PNG) and the ONNX model; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=16, choices=[8, 16, 32])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out-dir", default="out")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    data = load_digits_tensor(args.size)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
    test, train = data[perm[:200]], data[perm[200:]]
    print(f"digits: {len(train)} train / {len(test)} test images, {args.size}x{args.size}")

    model = SubPixelAutoencoder()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()
    with torch.no_grad():
        print(f"epoch  0: test loss {loss_fn(model.eval()(test), test).item():.5f} (untrained)")
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train))
        total = 0.0
        for i in range(0, len(train), args.batch_size):
            batch = train[order[i : i + args.batch_size]]
            loss = loss_fn(model(batch), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            test_loss = loss_fn(model(test), test).item()
        print(
            f"epoch {epoch:2d}: train loss {total / len(train):.5f}  test loss {test_loss:.5f}"
            f"  ({time.time() - start:.1f}s)"
        )

    os.makedirs(args.out_dir, exist_ok=True)
    model.eval()
    with torch.no_grad():
        recon = model(test[:20])
    png = os.path.join(args.out_dir, "subpixel_autoencoder.png")
    write_png(png, grid(test[:20, 0].numpy(), recon[:, 0].numpy()))
    print(f"wrote {png} (rows: inputs, reconstructions)")

    import onnx

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (test[:1],), f, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    proto = onnx.load_from_string(f.getvalue())
    proto.ir_version = 8
    onnx_path = os.path.join(args.out_dir, "subpixel_autoencoder.onnx")
    onnx.save(proto, onnx_path)
    ops = sorted({n.op_type for n in proto.graph.node})
    print(f"wrote {onnx_path}: ops {ops}")
    try:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        err = np.abs(
            sess.run(None, {"x": test[:8].numpy()})[0] - model(test[:8]).detach().numpy()
        ).max()
        print(f"ONNX Runtime vs torch: max abs error {err:.2e}")
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
