"""Models with external data.

Weights read lazily, untouched tensors streamed into OUTPUT.data (relative location), verification
from the files, the input and its data never modified. The multi-hundred-MB round trip (with a
peak-memory check) is marked slow; the small ones run by default.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import pytest
from builders import op_types, run
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import deconv2sub
from deconv2sub.cli import main
from deconv2sub.io.model_io import save_model

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
import big_model  # noqa: E402

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(9)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(9))


def _external_model(tmp_path, c=16, name="model.onnx"):
    """Two ConvTransposes and an untouched big initializer (an Add), saved with external data."""
    w1 = RNG.standard_normal((c, c, 4, 4)).astype(np.float32) * 0.1
    w2 = RNG.standard_normal((c, 4, 3, 3)).astype(np.float32) * 0.1
    extra = RNG.standard_normal((1, c, 16, 16)).astype(np.float32)
    nodes = [
        helper.make_node(
            "ConvTranspose", ["X", "W1"], ["H"], name="up1", strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Add", ["H", "E"], ["H2"], name="add"),
        helper.make_node(
            "ConvTranspose",
            ["H2", "W2"],
            ["Y"],
            name="up2",
            strides=[2, 2],
            pads=[1, 1, 0, 0],
            output_padding=[1, 1],
        ),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, c, 8, 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4, 33, 33])],
        [
            numpy_helper.from_array(w1, "W1"),
            numpy_helper.from_array(w2, "W2"),
            numpy_helper.from_array(extra, "E"),
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / name
    save_model(m, path, external_data=True)
    return path, m


def _snapshot(folder):
    return {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()
    }


def _locations(model):
    return {
        e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"
    }


def test_cli_external_data_round_trip(tmp_path):
    """``convert`` of an external-data model: verified, data beside the output, input untouched."""
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir(), out_dir.mkdir()
    path, m = _external_model(src_dir)
    before = _snapshot(src_dir)
    out = out_dir / "conv.onnx"
    r = CliRunner().invoke(
        main, ["convert", str(path), "-o", str(out), "--json"], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["verification"]["status"] == "PASSED" and data["conversion"]["rewritten"] == 2
    assert _snapshot(src_dir) == before  # input and its external data untouched
    assert sorted(p.name for p in out_dir.iterdir()) == ["conv.onnx", "conv.onnx.data"]
    skeleton = onnx.load(out, load_external_data=False)
    assert _locations(skeleton) == {"conv.onnx.data"}  # relative, beside the output
    # the untouched tensor was streamed over
    assert "E" in {t.name for t in skeleton.graph.initializer}
    loaded = onnx.load(out)
    assert "ConvTranspose" not in op_types(loaded)
    x = RNG.standard_normal((1, 16, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(loaded, {"X": x})[0], run(m, {"X": x})[0], rtol=1e-4, atol=1e-4)
    # Converting the output again from another working directory: nothing to rewrite, still loads.
    r = CliRunner().invoke(
        main,
        ["convert", str(out), "-o", str(tmp_path / "again.onnx"), "--no-verify"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output


def test_force_overwrite_external_output(tmp_path):
    """``--force`` overwrites an external-data output; an inline one removes the old data file."""
    path, _ = _external_model(tmp_path)
    out = tmp_path / "o.onnx"
    for _ in range(2):
        r = CliRunner().invoke(
            main,
            ["convert", str(path), "-o", str(out), "--force", "--no-verify"],
            catch_exceptions=False,
        )
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx",
        "model.onnx.data",
        "o.onnx",
        "o.onnx.data",
    ]
    assert onnx.load(out)
    # Overwriting with an inline output removes the old output's data file.
    r = CliRunner().invoke(main, ["convert", str(path), "-o", str(out), "--force", "--no-verify",
                                  "--no-external-data"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "o.onnx.data").exists() and onnx.load(out)


def test_library_convert_path_is_self_contained(tmp_path):
    """convert_model on a path returns a model with every tensor in memory."""
    path, m = _external_model(tmp_path)
    converted, report = deconv2sub.convert_model(str(path))
    assert len(report.rewritten) == 2
    assert not _locations(converted)  # every tensor in memory: safe to save anywhere
    x = RNG.standard_normal((1, 16, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        run(converted, {"X": x})[0], run(m, {"X": x})[0], rtol=1e-4, atol=1e-4
    )


def test_library_unloaded_external_data_needs_its_folder(tmp_path):
    """Unloaded external data is declined unless ``external_data_dir`` says where it is."""
    path, _ = _external_model(tmp_path)
    skeleton = onnx.load(path, load_external_data=False)
    _, report = deconv2sub.convert_model(skeleton)
    assert (
        not report.rewritten
        and report.skipped[0].code == "weight_not_constant"
        and "external data file that was not loaded" in report.skipped[0].reason
    )
    converted, report = deconv2sub.convert_model(skeleton, external_data_dir=str(tmp_path))
    assert len(report.rewritten) == 2 and not _locations(converted)


def test_truncated_external_data_is_exit_2(tmp_path):
    """A truncated external data file is a one-line error with exit code 2."""
    path, _ = _external_model(tmp_path)
    data = tmp_path / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    r = CliRunner().invoke(
        main, ["convert", str(path), "-o", str(tmp_path / "o.onnx")], catch_exceptions=False
    )
    assert r.exit_code == 2 and "too short" in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_300mb_round_trip_and_memory(tmp_path):
    """~300 MB of weights: converted and verified from the files; the output loads and matches.

    The converter's peak memory stays within 3x the weights (plus the interpreter and runtime).
    """
    facts = big_model.build_model(str(tmp_path), 300_000_000, layers=3)
    weights = facts["weights_bytes"]
    out = tmp_path / "converted.onnx"
    exe = os.path.join(os.path.dirname(sys.executable), "deconv2sub")
    res = big_model.measure([exe, "convert", facts["path"], "-o", str(out), "--json", "-q"])
    assert res["rc"] == 0, res["stderr"]
    assert res["peak_rss_bytes"] <= 3 * weights + 400e6, res
    skeleton = onnx.load(out, load_external_data=False)
    assert _locations(skeleton) == {"converted.onnx.data"}
    assert os.path.getsize(str(out) + ".data") >= weights
    loaded = onnx.load(out)
    original = onnx.load(facts["path"])
    x = RNG.standard_normal((1, facts["channels"], 1, 1)).astype(np.float32)
    np.testing.assert_allclose(run(loaded, {"x": x})[0], run(original, {"x": x})[0],
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("external", [True, False])
def test_big_new_weights_go_straight_to_the_output(tmp_path, external, monkeypatch):
    """Rewritten weights of 1 MiB and more bypass the in-memory model.

    They are written straight into the output, for an external-data output and for an inline one.
    """
    from deconv2sub.io import model_io

    written = []
    real = model_io._detached_bytes
    monkeypatch.setattr(
        model_io, "_detached_bytes", lambda src: written.append(type(src).__name__) or real(src)
    )
    c = 136  # W1: 136*136*4*4 float32 = 1.18 MB
    path, m = _external_model(tmp_path, c=c)
    out = tmp_path / "o.onnx"
    flag = "--external-data" if external else "--no-external-data"
    # --strategy two_stage: one Conv holds the whole rewritten weight (the default may split it per
    # phase)
    r = CliRunner().invoke(
        main,
        ["convert", str(path), "-o", str(out), flag, "--strategy", "two_stage"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output
    assert (tmp_path / "o.onnx.data").exists() == external
    assert written == ["ndarray"]  # the rewritten up1 weight
    skeleton = onnx.load(out, load_external_data=False)
    assert "<deconv2sub" not in str(_locations(skeleton))
    loaded = onnx.load(out)
    x = RNG.standard_normal((1, c, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(loaded, {"X": x})[0], run(m, {"X": x})[0], rtol=1e-4, atol=1e-4)


def test_shape_inference_of_big_inline_models_skips_their_data(monkeypatch):
    """Above a size, shapes are inferred on a skeleton without the big data: same result."""
    from deconv2sub import api

    _, m = _external_model_in_memory()
    full = api.infer_shapes(m)
    calls = []
    real = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(
        onnx.shape_inference,
        "infer_shapes",
        lambda model, *a, **k: calls.append(model.ByteSize()) or real(model, *a, **k),
    )
    monkeypatch.setattr(api, "_SKELETON_BYTES", 1000)
    assert api.infer_shapes(m) == full
    assert calls and calls[0] < m.ByteSize() / 2


def _external_model_in_memory():
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path, m = _external_model(pathlib.Path(d), c=32)
    return path, m
