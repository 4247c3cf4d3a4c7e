"""--input-shape reaches the decisions that stay exact at every size (issue 12, point 10).

``auto``'s measurements and the MACs use the given shape; nothing bakes a size the model leaves
symbolic, and verification runs at the given shape and at another one.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from builders import convtranspose_model, data_op_types, run
from click.testing import CliRunner

import deconv2sub
from deconv2sub.cli import main
from deconv2sub.targets import autotune


def invoke(*args):
    """Run the CLI with ``args``."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _symbolic_path(tmp_path):
    """A k2 s2 ConvTranspose on X (N,8,H,W), and where it is saved."""
    w = np.random.default_rng(21).standard_normal((8, 4, 2, 2)).astype(np.float32)
    m = convtranspose_model(["N", 8, "H", "W"], w, strides=[2, 2])
    path = tmp_path / "sym.onnx"
    onnx.save(m, path)
    return m, path


def test_auto_measures_at_the_given_shape_and_stays_dynamic(tmp_path, monkeypatch):
    """Auto measures at the given size, verifies there and elsewhere, and bakes nothing in."""
    monkeypatch.setenv("DECONV2SUB_CACHE_DIR", "")
    autotune.clear_cache()
    original, path = _symbolic_path(tmp_path)
    out = tmp_path / "out.onnx"
    r = invoke("convert", path, "-o", out, "--strategy", "auto", "--input-shape", "X:1,8,24,24",
               "--json", "-q")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (node,) = data["conversion"]["nodes"]
    assert node["strategy_reason"].startswith("auto: fastest measured"), node["strategy_reason"]
    # at symbolic sizes transpose_gather emits two_stage's graph: measured once, under that name
    measured = node["strategy_reason"]
    assert "two_stage" in measured and "transpose_gather" not in measured
    shapes = [t["input_shapes"]["X"] for t in data["verification"]["trials"]]
    assert shapes[0] == [1, 8, 24, 24] and len(shapes) == 2 and shapes[1] != shapes[0]
    converted = onnx.load(out)
    assert not {"Gather", "Gemm"} & set(data_op_types(converted))  # nothing baked for 24x24
    feeds = {"X": np.random.default_rng(22).standard_normal((3, 8, 5, 7)).astype(np.float32)}
    np.testing.assert_allclose(run(converted, feeds)[0], run(original, feeds)[0],
                               rtol=1e-5, atol=1e-5)


def test_inspect_auto_uses_the_given_shape(tmp_path, monkeypatch):
    """Inspect measures and counts MACs at the given size."""
    monkeypatch.setenv("DECONV2SUB_CACHE_DIR", "")
    autotune.clear_cache()
    _, path = _symbolic_path(tmp_path)
    r = invoke("inspect", path, "--strategy", "auto", "--input-shape", "X:1,8,24,24", "--json",
               "-q")
    assert r.exit_code == 0, r.output
    (node,) = json.loads(r.stdout)["nodes"]
    assert node["why"].startswith("auto: fastest measured"), node["why"]
    assert node["macs_before"] == 8 * 4 * 4 * 24 * 24


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_given_shape_never_bakes_sizes_into_default(target):
    """Batch 1 and a 1x1 k2 s2 take the Gemm + row Gather at known sizes: not for symbolic H/W."""
    rng = np.random.default_rng(23)
    w = rng.standard_normal((8, 4, 2, 2)).astype(np.float32)
    m = convtranspose_model([1, 8, "H", "W"], w, strides=[2, 2])
    options = deconv2sub.ConvertOptions(target=target, input_shapes={"X": (1, 8, 32, 32)})
    converted, report = deconv2sub.convert_model(m, options)
    assert not {"Gather", "Gemm"} & set(data_op_types(converted))
    for shape in [(1, 8, 32, 32), (1, 8, 5, 9)]:
        feeds = {"X": rng.standard_normal(shape).astype(np.float32)}
        np.testing.assert_allclose(run(converted, feeds)[0], run(m, feeds)[0], rtol=1e-5,
                                   atol=1e-5)
