"""Tests for deconv2sub.io.check and deconv2sub.io.skeleton: the ONNX checker, big models too."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from io_cases import assert_one_line, make_model, save_external, write
from onnx import TensorProto, numpy_helper

from deconv2sub.errors import InputError
from deconv2sub.io.check import check_model, checker_complaint
from deconv2sub.io.skeleton import skeleton


def test_check_model_ok():
    """A valid model passes."""
    check_model(make_model())
    assert checker_complaint(make_model()) is None


def test_check_model_invalid():
    """An undefined input is refused in one line that starts with ``what``."""
    model = make_model()
    model.graph.node[0].input[1] = "undefined_tensor"
    with pytest.raises(InputError) as ei:
        check_model(model, what="rewritten model")
    assert_one_line(ei)
    assert str(ei.value).startswith("rewritten model is not a valid ONNX model: ")
    assert "\n" not in checker_complaint(model)


def test_check_model_shape_inference_error():
    """A type contradiction found by shape inference is refused."""
    model = make_model()
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(InputError):
        check_model(model)


def test_check_large_model_fallback(monkeypatch):
    """Models over the protobuf limit are checked through a skeleton file."""
    monkeypatch.setattr(onnx.checker, "MAXIMUM_PROTOBUF", 100)
    model = make_model(32)
    before = model.SerializeToString()
    check_model(model)
    assert model.SerializeToString() == before
    model.graph.node[0].input[1] = "undefined_tensor"
    with pytest.raises(InputError) as ei:
        check_model(model)
    assert_one_line(ei)


def test_check_model_by_path_reads_no_external_data(tmp_path):
    """From a path the data file is only checked for presence and size, not read."""
    path = save_external(tmp_path)
    (tmp_path / "ext.onnx.data").write_bytes(b"\0" * (32 * 32 * 4))  # right size, any content
    check_model(path)
    broken = make_model()
    broken.graph.node[0].input[1] = "nope"
    with pytest.raises(InputError) as ei:
        check_model(write(tmp_path / "b.onnx", broken), "the input model")
    assert_one_line(ei)


def test_skeleton_keeps_dims_and_small_tensors():
    """Big initializers lose their data but keep their dims; small ones and the rest stay."""
    model = make_model(64)  # 16 KiB weight
    model.graph.initializer.append(numpy_helper.from_array(np.arange(3, dtype=np.int64), "small"))
    skel, total = skeleton(model, min_bytes=1024)
    big, small = skel.graph.initializer
    assert not big.HasField("raw_data") and list(big.dims) == [64, 64] and total == 64 * 64 * 4
    assert numpy_helper.to_array(small).tolist() == [0, 1, 2]
    assert (skel.ir_version, skel.graph.node[0].op_type) == (model.ir_version, "Add")
    assert model.graph.initializer[0].HasField("raw_data")  # the model itself is untouched
