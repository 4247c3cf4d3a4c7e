"""Tests for deconv2sub.io.external_data: the files a model's data lives in, checked unread."""

from __future__ import annotations

import io

import pytest
from io_cases import assert_one_line, make_model, save_external, write

from deconv2sub.errors import InputError, OutputError
from deconv2sub.io.external_data import (
    copy_range,
    external_data_files,
    read_range,
    verify_external_data,
)
from deconv2sub.io.load import load_model, model_files, model_size_bytes


def test_external_data_files_and_sizes(tmp_path):
    """The files a model occupies and their total size, with and without external data."""
    path = save_external(tmp_path)
    data = (tmp_path / "ext.onnx.data").resolve()
    assert external_data_files(load_model(path, load_external_data=False), tmp_path) == [data]
    assert external_data_files(load_model(path), tmp_path) == []  # data now in memory
    assert model_files(path) == [path.resolve(), data]
    assert model_size_bytes(path) == path.stat().st_size + data.stat().st_size == (
        path.stat().st_size + 32 * 32 * 4
    )
    inline = write(tmp_path / "inline.onnx", make_model())
    assert model_files(inline) == [inline.resolve()]
    assert model_size_bytes(inline) == inline.stat().st_size


def test_verify_external_data(tmp_path):
    """A data file cut short or missing is found without reading it."""
    path = save_external(tmp_path)
    skeleton = load_model(path, load_external_data=False)
    verify_external_data(skeleton, path)
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(InputError) as ei:
        verify_external_data(skeleton, path)
    assert_one_line(ei, data, "too short")
    data.unlink()
    with pytest.raises(InputError) as ei:
        verify_external_data(skeleton, path)
    assert_one_line(ei, data, "missing")


def test_byte_ranges_are_streamed_exactly(tmp_path):
    """copy_range and read_range give exactly the bytes asked for, and refuse a short file."""
    src = tmp_path / "d.data"
    src.write_bytes(bytes(range(256)) * 4)
    out = io.BytesIO()
    assert copy_range(str(src), 10, 20, out) == 20 and out.getvalue() == bytes(range(10, 30))
    out = io.BytesIO()
    assert copy_range(str(src), 1000, None, out) == 24 and out.getvalue() == bytes(range(232, 256))
    assert read_range(str(src), 3, 2) == b"\x03\x04" and read_range(str(src), 1020, None) == bytes(
        range(252, 256)
    )
    for short in (lambda: copy_range(str(src), 1000, 100, io.BytesIO()),
                  lambda: read_range(str(src), 1000, 100)):
        with pytest.raises(OutputError) as ei:
            short()
        assert_one_line(ei, src, "shorter")
