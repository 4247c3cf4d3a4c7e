"""Tests for deconv2sub.io.load: reading models, with one clear error line for every failure."""

from __future__ import annotations

import os

import numpy as np
import pytest
from io_cases import IS_ROOT, assert_one_line, make_model, save_external, write

from deconv2sub.errors import InputError
from deconv2sub.io import load
from deconv2sub.io.load import load_model, model_size_bytes


def test_load_roundtrip_and_file_untouched(tmp_path):
    """The loaded model equals the saved one; the file is neither changed nor touched."""
    model = make_model()
    path = write(tmp_path / "m.onnx", model)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    loaded = load_model(str(path))
    assert loaded == model
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_load_missing_file(tmp_path):
    """A missing file is one line naming it."""
    path = tmp_path / "nope.onnx"
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path)


def test_load_directory(tmp_path):
    """A directory is refused, saying so."""
    with pytest.raises(InputError) as ei:
        load_model(tmp_path)
    assert_one_line(ei, tmp_path, "directory")


def test_load_empty_file(tmp_path):
    """An empty file is refused, saying so."""
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "empty")


@pytest.mark.parametrize(
    "content",
    [
        bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
        b"hello world\n",
        b"ir_version: 9\ngraph { name: 'g' }\n",
        b"\x00" * 64,
        b"PK\x03\x04 not a model",
    ],
    ids=["random", "text", "textproto", "zeros", "zip"],
)
def test_load_not_onnx(tmp_path, content):
    """Files that are not ONNX protobufs are refused as not valid models."""
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "not a valid ONNX model")


def test_load_truncated_every_prefix(tmp_path):
    """Every proper prefix of a model file is refused with one line."""
    data = make_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(InputError) as ei:
            load_model(path)
        assert_one_line(ei, path)


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores file permissions")
def test_load_unreadable(tmp_path):
    """A file without read permission: permission denied."""
    path = write(tmp_path / "m.onnx", make_model())
    path.chmod(0)
    try:
        with pytest.raises(InputError) as ei:
            load_model(path)
        assert_one_line(ei, path, "permission denied")
    finally:
        path.chmod(0o644)


def test_load_permission_error_simulated(tmp_path, monkeypatch):
    """Runs as root too: the read itself fails with PermissionError."""
    path = write(tmp_path / "m.onnx", make_model())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(load, "open", denied, raising=False)
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "permission denied")


def test_load_missing_external_data(tmp_path):
    """A missing data file is named; without loading the data the model itself still loads."""
    path = save_external(tmp_path)
    data = tmp_path / "ext.onnx.data"
    data.unlink()
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, data, "missing")
    assert load_model(path, load_external_data=False).graph.initializer[0].name == "w"


def test_load_bad_external_data(tmp_path):
    """A data file too short for its tensors is one line naming it."""
    path = save_external(tmp_path)
    (tmp_path / "ext.onnx.data").write_bytes(b"short")
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "ext.onnx.data")


def test_model_size_bytes_missing(tmp_path):
    """The size of a missing model is an InputError naming it."""
    with pytest.raises(InputError) as ei:
        model_size_bytes(tmp_path / "nope.onnx")
    assert_one_line(ei, tmp_path / "nope.onnx")
