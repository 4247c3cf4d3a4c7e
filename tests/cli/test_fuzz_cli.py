"""Bad input never produces a traceback.

Corrupted, truncated, empty, directories, wrong extensions, missing external data, unwritable
outputs → one clear line on stderr and exit 2, nothing written. A convert that is killed while
saving leaves no output or the previous one intact; the input is never modified.

Decision on extensions: the content decides, not the file name. A valid model in ``model.txt`` is
converted (exit 0); garbage in ``model.onnx`` is rejected (exit 2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from builders import convtranspose_model, op_types, run
from onnx import TensorProto, helper, numpy_helper

from deconv2sub.io import save
from deconv2sub.io.save import save_model
from deconv2sub.runtime.timing import random_feeds

RNG = np.random.default_rng(2024)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
EXE = os.path.join(os.path.dirname(sys.executable), "deconv2sub")


def _model():
    return convtranspose_model(
        [1, 3, 5, 5],
        RNG.standard_normal((3, 2, 4, 4)).astype(np.float32),
        RNG.standard_normal(2).astype(np.float32),
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )


@pytest.fixture(scope="module")
def model_bytes():
    """A small valid model, serialised."""
    return _model().SerializeToString()


@pytest.fixture()
def convert(invoke):
    """``deconv2sub convert ARGS``."""
    return lambda *args: invoke("convert", *args)


def _leftovers(folder, *keep):
    return sorted(p for p in os.listdir(folder) if p not in keep)


def assert_clean_failure(r, folder=None, keep=()):
    """Exit 2, one line on stderr (the error), nothing on stdout, no traceback, nothing written."""
    assert r.exit_code == 2, (r.exit_code, r.output)
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("deconv2sub: error: "), r.stderr
    assert "Traceback" not in r.output and not r.stdout.strip(), r.output
    if folder is not None:
        assert _leftovers(folder, *keep) == [], _leftovers(folder, *keep)


def assert_computes_like_the_original(src, out, r):
    """The converted model's outputs are ONNX Runtime's for the original (inf/NaN where it has).

    A node left alone (``r`` says why) leaves the graph as it was. Where ONNX Runtime cannot run
    the original at its declared input shapes (a flip changed one), ``r`` must say that the
    rewrite was not verified.
    """
    original, converted = onnx.load(src), onnx.load(out)
    if "0 rewritten" in r.output:
        assert list(converted.graph.node) == list(original.graph.node)
        return
    assert "ConvTranspose" not in op_types(converted)
    feeds = random_feeds(original)
    try:
        refs = run(original, feeds)
    except (
        ort.capi.onnxruntime_pybind11_state.Fail,
        ort.capi.onnxruntime_pybind11_state.InvalidArgument,
    ):
        assert "the rewrite was NOT verified" in r.output, r.output
        return
    gots = run(converted, feeds)
    assert len(refs) == len(gots)
    for ref, got in zip(refs, gots):
        finite = np.abs(ref[np.isfinite(ref)])
        scale = max(float(finite.max()) if finite.size else 0.0, 1.0)
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * scale, equal_nan=True)


def _try_corrupt(convert, tmp_path, data, name="bad.onnx"):
    bad = tmp_path / name
    bad.write_bytes(data)
    out = tmp_path / "out.onnx"
    if out.exists():
        out.unlink()
    r = convert(bad, "-o", out)
    assert "Traceback" not in r.output, r.output
    if r.exit_code == 0:  # the corruption left a valid model (e.g. other weight values): converted
        assert_computes_like_the_original(bad, out, r)
    else:
        assert_clean_failure(r, tmp_path, keep=(name,))
    return r.exit_code


def test_truncated_at_many_offsets(convert, tmp_path, model_bytes):
    """A model cut at any of many offsets is rejected cleanly (or still converts correctly)."""
    n = len(model_bytes)
    offsets = sorted(set(list(range(0, 64)) + list(np.linspace(64, n - 1, 40).astype(int))))
    codes = [_try_corrupt(convert, tmp_path, model_bytes[:k]) for k in offsets]
    assert codes.count(2) >= len(offsets) - 2  # essentially every cut is rejected


def test_random_byte_flips(convert, tmp_path, model_bytes):
    """Random byte flips are rejected cleanly or still convert correctly.

    Flips hit structure (rejected) or weight bytes (still valid: converted; a weight turned inf/NaN
    is left as ConvTranspose with a reason, since 0 * inf in the Conv's zero taps would differ).
    """
    rng = np.random.default_rng(7)
    codes = []
    for _ in range(60):
        data = bytearray(model_bytes)
        for pos in rng.integers(0, len(data), rng.integers(1, 12)):
            data[pos] ^= int(rng.integers(1, 256))
        codes.append(_try_corrupt(convert, tmp_path, bytes(data)))
    assert 2 in codes


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 100,
        b"not an onnx model",
        b"PK\x03\x04zipfile",
        b"\x89PNG\r\n\x1a\n",
        b'{"ir_version": 8}',
        b"\x08\x08",
        b"\xff" * 64,
    ],
)
def test_garbage_files(convert, tmp_path, content):
    """Garbage of many kinds: one line, exit 2, nothing written."""
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    assert_clean_failure(convert(p, "-o", tmp_path / "out.onnx"), tmp_path, keep=("bad.onnx",))


def test_directory_and_missing_input(convert, tmp_path):
    """A directory or a missing file as input: one line, exit 2."""
    (tmp_path / "d.onnx").mkdir()
    assert_clean_failure(
        convert(tmp_path / "d.onnx", "-o", tmp_path / "out.onnx"), tmp_path, keep=("d.onnx",)
    )
    assert_clean_failure(
        convert(tmp_path / "nope.onnx", "-o", tmp_path / "out.onnx"), tmp_path, keep=("d.onnx",)
    )


def test_wrong_extensions(convert, tmp_path, model_bytes):
    """The content decides: a model named .txt is converted; a text file named .onnx is rejected."""
    (tmp_path / "model.txt").write_bytes(model_bytes)
    r = convert(tmp_path / "model.txt", "-o", tmp_path / "out.bin")
    assert r.exit_code == 0, r.output
    assert "ConvTranspose" not in op_types(onnx.load(tmp_path / "out.bin"))
    assert_computes_like_the_original(tmp_path / "model.txt", tmp_path / "out.bin", r)
    (tmp_path / "notes.onnx").write_text("hello\n")
    assert_clean_failure(convert(tmp_path / "notes.onnx", "-o", tmp_path / "o2.onnx"))


def _external(tmp_path):
    m = _model()
    m.graph.initializer[0].CopyFrom(
        numpy_helper.from_array(RNG.standard_normal((3, 2, 16, 16)).astype(np.float32), "W")
    )
    m.graph.node[0].ClearField("attribute")
    m.graph.node[0].attribute.extend([helper.make_attribute("strides", [2, 2])])
    path = tmp_path / "ext.onnx"
    save_model(m, path, external_data=True)
    return path


def test_missing_external_data(convert, tmp_path):
    """A missing external data file is named."""
    path = _external(tmp_path)
    (tmp_path / "ext.onnx.data").unlink()
    r = convert(path, "-o", tmp_path / "out.onnx")
    assert_clean_failure(r, tmp_path, keep=("ext.onnx",))
    assert "ext.onnx.data" in r.stderr and "missing" in r.stderr


def test_external_data_is_a_directory(convert, tmp_path):
    """External data that is a directory: one line, exit 2."""
    path = _external(tmp_path)
    (tmp_path / "ext.onnx.data").unlink()
    (tmp_path / "ext.onnx.data").mkdir()
    assert_clean_failure(convert(path, "-o", tmp_path / "out.onnx"))


def test_output_onto_input_external_data(convert, tmp_path):
    """An output whose data file would be the input's data file is refused, even with --force."""
    path = _external(tmp_path)
    before = (tmp_path / "ext.onnx.data").read_bytes()
    os.rename(path, tmp_path / "in.onnx")  # in.onnx keeps its data in ext.onnx.data
    r = convert(tmp_path / "in.onnx", "-o", tmp_path / "ext.onnx", "--force")
    assert_clean_failure(r)
    assert (tmp_path / "ext.onnx.data").read_bytes() == before


def test_readonly_output_folder_simulated(convert, tmp_path, monkeypatch, model_bytes):
    """Runs as root too: the folder reports no write access."""
    (tmp_path / "m.onnx").write_bytes(model_bytes)
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        save.os,
        "access",
        lambda p, mode, *a, **k: False if str(p) == str(out_dir) else real_access(p, mode),
    )
    r = convert(tmp_path / "m.onnx", "-o", out_dir / "out.onnx")
    assert_clean_failure(r, out_dir)
    assert "not writable" in r.stderr


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores file permissions")
def test_readonly_output_folder_real(convert, tmp_path, model_bytes):
    """A read-only output folder: one line, exit 2, nothing written."""
    (tmp_path / "m.onnx").write_bytes(model_bytes)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_clean_failure(convert(tmp_path / "m.onnx", "-o", ro / "out.onnx"), ro)
    finally:
        ro.chmod(0o755)


def test_output_under_a_file_and_missing_folder(convert, tmp_path, model_bytes):
    """An output under a file, in a missing folder or a directory: exit 2."""
    (tmp_path / "m.onnx").write_bytes(model_bytes)
    (tmp_path / "afile").write_text("x")
    assert_clean_failure(convert(tmp_path / "m.onnx", "-o", tmp_path / "afile" / "out.onnx"))
    assert_clean_failure(convert(tmp_path / "m.onnx", "-o", tmp_path / "no" / "dir" / "out.onnx"))
    assert_clean_failure(convert(tmp_path / "m.onnx", "-o", tmp_path))


def test_write_failure_mid_save(convert, tmp_path, monkeypatch, model_bytes):
    """A disk error while writing: one line, exit 2, no partial file, previous output intact."""
    (tmp_path / "m.onnx").write_bytes(model_bytes)
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full_disk)
    r = convert(tmp_path / "m.onnx", "-o", out, "--force")
    assert_clean_failure(r, tmp_path, keep=("m.onnx", "out.onnx"))
    assert "No space left" in r.stderr and out.read_bytes() == b"previous"


# ---- real processes ------------------------------------------------------------------------------
def _cli(*args, timeout=120):
    return subprocess.run(
        [EXE, *[str(a) for a in args]], capture_output=True, text=True, timeout=timeout
    )


def test_console_script_bad_inputs(tmp_path, model_bytes):
    """The installed console script: one line on stderr, exit 2, no traceback."""
    cases = {
        "empty.onnx": b"",
        "trunc.onnx": model_bytes[: len(model_bytes) // 3],
        "junk.onnx": b"\x0a\xff\x01junk",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "dir.onnx").mkdir()
    ext = _external(tmp_path)
    (tmp_path / "ext.onnx.data").unlink()
    for src in [*cases, "dir.onnx", ext.name]:
        p = _cli("convert", tmp_path / src, "-o", tmp_path / "out.onnx")
        assert p.returncode == 2, (src, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("deconv2sub: error: "), (src, p.stderr)
        assert "Traceback" not in p.stderr + p.stdout
        assert not (tmp_path / "out.onnx").exists()


def _big_external_model(folder, mb=96):
    """A model whose save takes long enough to be interrupted: ~``mb`` MB of external data."""
    c = int((mb * 1e6 / 2 / 64) ** 0.5)
    w1 = RNG.standard_normal((c, c, 4, 4)).astype(np.float32)
    w2 = RNG.standard_normal((c, c, 4, 4)).astype(np.float32)
    nodes = [
        helper.make_node(
            "ConvTranspose", ["X", "W1"], ["H"], name="up1", strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node(
            "ConvTranspose", ["H", "W2"], ["Y"], name="up2", strides=[2, 2], pads=[1, 1, 1, 1]
        ),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, c, 1, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, c, 4, 4])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / "big.onnx"
    save_model(m, path, external_data=True)
    return path


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("previous", [True, False])
def test_kill_during_save(tmp_path, previous):
    """SIGKILL while saving leaves no output or the previous one intact; the next save succeeds."""
    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir(), out_dir.mkdir()
    path = _big_external_model(src_dir)
    src_before = _snapshot(src_dir)
    out = out_dir / "out.onnx"
    if previous:  # a previous output (model + data), as a converted model would be
        save_model(_model(), out, external_data=True)
        (out_dir / "out.onnx.data").write_bytes(
            b"previous data" * 100
        )  # marked but content is ours to compare
        before = _snapshot(out_dir)

    killed_during = None
    for attempt in range(3):
        proc = subprocess.Popen(
            [EXE, "convert", str(path), "-o", str(out), "--force", "--no-verify", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = [p for p in os.listdir(out_dir) if p.startswith(".out.onnx.tmp-")]
            if tmp and any(os.listdir(out_dir / tmp[0])):  # the save has started writing
                proc.send_signal(signal.SIGKILL)
                killed_during = tmp[0]
                break
            time.sleep(0.001)
        proc.wait(timeout=60)
        if killed_during:
            break
    assert killed_during, "the save was never caught in the act"
    assert proc.returncode == -signal.SIGKILL
    assert _snapshot(src_dir) == src_before  # the input and its data are never modified
    if previous:
        assert _snapshot(out_dir) == before  # previous output intact (the temp folder aside)
    else:
        assert not out.exists() and not (out_dir / "out.onnx.data").exists()
    visible = sorted(p for p in os.listdir(out_dir) if not p.startswith("."))
    assert visible == (["out.onnx", "out.onnx.data"] if previous else [])

    # The next save removes the dead process's temporary folder and succeeds.
    r = _cli("convert", path, "-o", out, "--force", "--no-verify", "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out_dir)) == ["out.onnx", "out.onnx.data"]
    assert op_types(onnx.load(out)).count("ConvTranspose") == 0
