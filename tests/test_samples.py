"""Every committed sample in samples/ converts completely and matches ORT running the original.

Also through the CLI with the README's defaults (no --input-shape).

Needs no torch: the samples are committed .onnx files (re-exported by samples/export_samples.py).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import onnx
import pytest
from builders import op_types, run
from click.testing import CliRunner

import deconv2sub
from deconv2sub.cli import main
from deconv2sub.verify.inputs import model_input_specs

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")

# name -> (ConvTranspose count, list of feeds as {input: shape}); two shapes wherever a dim is
# dynamic.
SAMPLES = {
    "seed_example": (1, [{"x": (1, 1, 4, 4)}]),
    "dcgan_generator": (4, [{"z": (1, 16, 1, 1)}, {"z": (5, 16, 1, 1)}]),
    "autoencoder": (2, [{"x": (1, 1, 28, 28)}, {"x": (4, 1, 28, 28)}]),
    "unet_decoder": (3, [{"x": (1, 3, 32, 32)}, {"x": (2, 3, 24, 40)}]),
    "enet_decoder": (3, [{"x": (1, 32, 8, 8)}, {"x": (2, 32, 5, 7)}]),
    "hifigan_upsampler": (2, [{"mel": (1, 16, 20)}, {"mel": (3, 16, 7)}]),
    "unet3d_upblock": (1, [{"x": (1, 16, 4, 4, 4), "skip": (1, 8, 8, 8, 8)},
                           {"x": (2, 16, 2, 3, 5), "skip": (2, 8, 4, 6, 10)}]),
    "grouped_upsampler": (2, [{"x": (1, 8, 8, 8)}, {"x": (3, 8, 5, 9)}]),
}


def _path(name: str) -> str:
    return os.path.join(SAMPLES_DIR, f"{name}.onnx")


def test_every_committed_sample_is_listed():
    """Every .onnx file in samples/ is listed here, and only those."""
    committed = {f[: -len(".onnx")] for f in os.listdir(SAMPLES_DIR) if f.endswith(".onnx")}
    assert committed == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_file(name):
    """Each sample is small, valid, opset 17, and holds the listed ConvTranspose count."""
    path = _path(name)
    assert os.path.getsize(path) < 2 * 1024 * 1024
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert model.ir_version <= 10
    assert {o.domain: o.version for o in model.opset_import}.get("", None) == 17
    assert op_types(model).count("ConvTranspose") == SAMPLES[name][0]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_converts_and_matches_ort(name):
    """Each sample converts completely and matches ORT running the original."""
    count, feeds_shapes = SAMPLES[name]
    original = onnx.load(_path(name))
    converted, report = deconv2sub.convert_model(_path(name))
    assert len(report.nodes) == count
    assert all(n.status == "rewritten" for n in report.nodes), [
        (n.name, n.reason) for n in report.nodes
    ]
    assert "ConvTranspose" not in op_types(converted)
    onnx.checker.check_model(converted, full_check=True)
    rng = np.random.default_rng(0)
    for shapes in feeds_shapes:
        feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
        ref = run(original, feeds)
        got = run(converted, feeds)
        for r, g in zip(ref, got):
            assert r.shape == g.shape
            scale = max(float(np.abs(r).max()), 1e-3)
            err = float(np.abs(r.astype(np.float64) - g).max())
            assert err <= 1e-5 * scale, f"{name} {shapes}: max abs err {err}, output max {scale}"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_converts_with_the_readme_defaults(name, tmp_path, capfd):
    """``deconv2sub convert samples/X.onnx -o out.onnx`` verifies, with no ONNX Runtime log line.

    Verified at two different shapes where a dim is symbolic, sizes tied by the graph included; no
    ONNX Runtime log line anywhere.
    """
    out = tmp_path / "out.onnx"
    r = CliRunner().invoke(main, ["convert", _path(name), "-o", str(out), "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["verification"]
    assert v["status"] == "PASSED"
    specs = model_input_specs(onnx.load(_path(name)))
    symbolic = any(not isinstance(d, int) for s in specs for d in s.shape)
    shapes = [t["input_shapes"] for t in v["trials"]]
    assert len(shapes) == (2 if symbolic else 1)
    assert len(shapes) == len({json.dumps(s, sort_keys=True) for s in shapes})
    captured = capfd.readouterr()
    assert not re.search(r"\[[VIWEF]:onnxruntime:", captured.out + captured.err + r.output)


def test_seed_example_is_the_issue_example():
    """seed_example converts to the issue's Conv kernel (4,1,2,2) + DepthToSpace."""
    converted, report = deconv2sub.convert_model(
        _path("seed_example"), deconv2sub.ConvertOptions(strategy="depth_to_space")
    )
    (node,) = report.nodes
    assert node.conv_kernel == [2, 2] and node.conv_channels == 4  # Conv weight (4, 1, 2, 2)
    assert node.shuffle.startswith("DepthToSpace")
    convs = [n for n in converted.graph.node if n.op_type == "Conv"]
    weights = {i.name: i for i in converted.graph.initializer}
    assert list(weights[convs[0].input[1]].dims) == [4, 1, 2, 2]
