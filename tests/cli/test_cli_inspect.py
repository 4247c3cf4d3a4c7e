"""`deconv2sub inspect`: table, totals, JSON, exit codes, 80 columns."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from builders import convtranspose_model
from surface_builders import save, two_deconv_model

import deconv2sub
from deconv2sub.rewrite.options import ConvertOptions


def _convert_report(path, options=None):
    return deconv2sub.convert_model(onnx.load(path), options)[1].nodes


@pytest.fixture()
def model_path(tmp_path):
    """The two-ConvTranspose model, saved."""
    return save(two_deconv_model(), tmp_path / "m.onnx")


def test_table(invoke, model_path):
    """One block per node (shape, attributes, plan, MACs), totals, 80 columns."""
    r = invoke("inspect", model_path)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert all(len(ln) <= 80 for ln in lines if model_path not in ln), r.output
    assert lines[0].startswith(model_path) and "opset 17" in lines[0]
    i = lines.index("1  up1")
    assert lines[i + 1].split()[:5] == ["1x8x5x5", "k4", "s2", "p1", "g1"]
    assert "12.8k→" in lines[i + 1]  # 8*4*4*4 weights x 5*5 input pixels
    shuffle = _convert_report(model_path)[0].shuffle  # whatever convert emits, inspect shows
    assert lines[i + 2].strip().startswith("Conv k2x2, 16 ch") and shuffle in lines[i + 2]
    assert "2  up2" in lines and any("op1" in ln for ln in lines)
    assert any(ln.strip().startswith("total: 2 of 2 rewritable") for ln in lines)
    assert lines[-1].startswith("2 ConvTranspose: 2 rewritable, 0 kept; MACs")


def test_json(invoke, model_path):
    """The JSON report's MACs and bytes equal the counts computed by hand."""
    r = invoke("inspect", model_path, "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert [n["name"] for n in data["nodes"]] == ["up1", "up2"]
    up1 = data["nodes"][0]
    from deconv2sub.inspection import inspect_model

    assert up1["macs_before"] == 8 * 4 * 16 * 25
    assert up1["macs_after"] == inspect_model(onnx.load(model_path)).nodes[0].macs_after > 0
    assert up1["weight_bytes_before"] == (8 * 4 * 16 + 4) * 4
    assert (
        up1["emission"]["shuffle"] == _convert_report(model_path)[0].shuffle
        and up1["rewritable"] is True
    )
    assert data["totals"]["macs_before"] == sum(n["macs_before"] for n in data["nodes"])


def test_quiet_prints_the_summary_only(invoke, model_path):
    """-q prints the summary line only."""
    r = invoke("inspect", model_path, "-q")
    assert r.exit_code == 0
    assert r.output.splitlines() == [r.output.splitlines()[-1]]
    assert r.output.startswith("2 ConvTranspose: ")


def test_skipped_node_and_input_shape(invoke, tmp_path):
    """A kept node shows why; MACs need --input-shape for symbolic dims."""
    w = np.ones((4, 2, 3, 3), np.float32)
    p = save(
        convtranspose_model(["N", 4, "H", "W"], w, None, weight_as="input", strides=[2, 2]),
        tmp_path / "s.onnx",
    )
    r = invoke("inspect", p)
    assert r.exit_code == 0
    assert "kept as ConvTranspose: weight 'W' is a graph input" in r.output
    assert "?→?" in r.output and "--input-shape" in r.output
    r = invoke("inspect", p, "--input-shape", "X:1,4,6,6", "--json")
    node = json.loads(r.stdout)["nodes"][0]
    assert node["rewritable"] is False and node["macs_before"] == node["macs_after"] == w.size * 36


def test_emission_options(invoke, model_path):
    """--shuffle/--order reach the plan shown, as convert would emit it."""
    r = invoke("inspect", model_path, "--shuffle", "reshape", "--order", "CRD", "--json")
    expected = [
        n.shuffle
        for n in _convert_report(model_path, ConvertOptions(shuffle="reshape", order="CRD"))
    ]
    assert [n["emission"]["shuffle"] for n in json.loads(r.stdout)["nodes"]] == expected


def test_bad_input_exit_2(invoke, tmp_path, model_path):
    """Missing or garbage model, bad --input-shape: one line, exit 2."""
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"nope")
    for args in (
        [tmp_path / "missing.onnx"],
        [garbage],
        [model_path, "--input-shape", "x:1,2"],
        [model_path, "--input-shape", "zz:1,8,5,5"],
    ):
        r = invoke("inspect", *args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("deconv2sub: error:")


def test_help_has_example(invoke):
    """Inspect --help shows examples."""
    r = invoke("inspect", "--help")
    assert r.exit_code == 0 and "Example:" in r.output and "deconv2sub inspect" in r.output
