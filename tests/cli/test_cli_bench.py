"""`deconv2sub bench`: the results' structure (never speed); the loop: tests/runtime."""

from __future__ import annotations

import json

import pytest
from surface_builders import add_chain_model, converted, save, two_deconv_model


def test_cli_in_memory_conversion_json(invoke, tmp_path):
    """Without CANDIDATE, bench converts MODEL in memory; the JSON says so."""
    p = save(two_deconv_model(), tmp_path / "m.onnx")
    r = invoke("bench", p, "--runs", "3", "--warmup", "1", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    orig, cand = data["models"]
    assert (orig["label"], cand["label"]) == ("original", "candidate")
    assert orig["runs"] == cand["runs"] == 3 and orig["median_ms"] > 0 and cand["median_ms"] > 0
    assert data["speedup"] == pytest.approx(orig["median_ms"] / cand["median_ms"])
    assert data["graph_optimizations"] is True and data["conversion"]["rewritten"] == 2
    assert data["sources"]["candidate"].endswith("converted in memory")
    assert data["input_shapes"] == {"x": [1, 8, 5, 5]}


def test_cli_text_with_candidate(invoke, tmp_path):
    """The text report: setting, one row per model, the speedup line, 80 columns."""
    original = two_deconv_model(shape=("N", 8, "H", "W"))
    a, b = save(original, tmp_path / "a.onnx"), save(converted(original), tmp_path / "b.onnx")
    r = invoke(
        "bench",
        a,
        b,
        "--runs",
        "2",
        "--warmup",
        "0",
        "--input-shape",
        "x:1,8,9,9",
        "--threads",
        "1",
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert all(len(ln) <= 80 for ln in lines if str(tmp_path) not in ln), r.output
    assert (
        "graph optimisations on" in r.output
        and "x:1x8x9x9" in r.output
        and "threads: 1" in r.output
    )
    assert any(ln.startswith("original ") for ln in lines) and any(
        ln.startswith("candidate ") for ln in lines
    )
    assert lines[-1].startswith("speedup ") and "x: candidate " in lines[-1]


def test_cli_openvino(invoke, tmp_path):
    """--runtime openvino times on OpenVINO."""
    pytest.importorskip("openvino")
    p = save(two_deconv_model(), tmp_path / "m.onnx")
    r = invoke("bench", p, "--runs", "2", "--warmup", "1", "--runtime", "openvino", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["runtime"].startswith("openvino")


def test_cli_bad_input(invoke, tmp_path):
    """Missing files, --runs 0, incompatible models, a missing --inputs file: exit 2."""
    p = save(two_deconv_model(), tmp_path / "m.onnx")
    other = save(add_chain_model(2), tmp_path / "other.onnx")
    for args in (
        [tmp_path / "missing.onnx"],
        [p, tmp_path / "missing.onnx"],
        [p, "--runs", "0"],
        [p, other],
        [p, "--inputs", tmp_path / "missing.npz"],
    ):
        r = invoke("bench", *args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def test_help_has_example(invoke):
    """Bench --help shows examples."""
    r = invoke("bench", "--help")
    assert r.exit_code == 0 and "Example:" in r.output and "deconv2sub bench" in r.output
