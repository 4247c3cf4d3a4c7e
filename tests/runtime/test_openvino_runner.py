"""deconv2sub.runtime.openvino: OpenVINO on CPU, against ONNX Runtime."""

import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from deconv2sub.errors import InputError, NoKernelError, RuntimeUnavailableError
from deconv2sub.runtime.runners import create_runner
from deconv2sub.verify.inputs import TensorSpec


def test_openvino_matches_onnxruntime(model, x):
    """OpenVINO's outputs match ORT's; earlier results survive a later run at another batch."""
    pytest.importorskip("openvino")
    m, w = model
    ov = create_runner(m, runtime="openvino")
    assert ov.info.runtime == "openvino" and ov.info.device == "CPU" and ov.info.note is None
    assert sorted(ov.output_names()) == ["y", "z"]
    assert ov.input_specs() == [TensorSpec("x", np.dtype(np.float32), ("N", 2, 4, 4))]
    ref = create_runner(m, provider="cpu").run({"x": x})
    got = ov.run({"x": x})
    assert set(got) == {"y", "z"}
    for name in ("y", "z"):
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5)
    x2 = x[:1] * 2  # dynamic batch, and results of an earlier run must not be overwritten
    again = ov.run({"x": x2}, ["y"])
    assert again["y"].shape[0] == 1
    np.testing.assert_allclose(got["y"], ref["y"], rtol=1e-5, atol=1e-5)


def test_openvino_run_for_timing_leaves_earlier_results_alone(model, x):
    """The timing call shares buffers without overwriting what ``run`` returned."""
    pytest.importorskip("openvino")
    ov = create_runner(model[0], runtime="openvino")
    got = ov.run({"x": x})
    kept = {k: v.copy() for k, v in got.items()}
    assert ov.run_for_timing({"x": x * 3}) is None
    for name in kept:
        np.testing.assert_array_equal(got[name], kept[name])
    with pytest.raises(InputError, match="^openvino failed to run model: "):
        ov.run_for_timing({"x": np.zeros((1, 3, 4, 4), np.float32)})


def test_openvino_errors(model, monkeypatch):
    """CUDA, unreadable models, unknown ops and a missing OpenVINO each give their error."""
    pytest.importorskip("openvino")
    with pytest.raises(RuntimeUnavailableError, match="OpenVINO has no CUDA"):
        create_runner(model[0], runtime="openvino", provider="cuda")
    with pytest.raises(InputError,
                       match="^openvino cannot load converted model: Unable to read the model"):
        create_runner(b"garbage", runtime="openvino", what="converted model")
    unknown_op = helper.make_model(
        helper.make_graph(
            [helper.make_node("NoSuchOp", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        ir_version=9,
    )
    with pytest.raises(NoKernelError,
                       match="^openvino cannot load model: No conversion rule found .*NoSuchOp"):
        create_runner(unknown_op, runtime="openvino")
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    with pytest.raises(RuntimeUnavailableError, match=r"pip install 'deconv2sub\[openvino\]'"):
        create_runner(model[0], runtime="openvino")
