"""deconv2sub.runtime.runners and .base: the registry's checks, model sources, RuntimeInfo."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deconv2sub.errors import InputError
from deconv2sub.runtime import base
from deconv2sub.runtime.base import RuntimeInfo
from deconv2sub.runtime.runners import RUNTIMES, TOOLCHAINS, create_runner
from deconv2sub.verify.inputs import TensorSpec


def test_require_cuda_contradicts_cpu(model):
    """Requiring CUDA on provider "cpu" is refused before loading."""
    with pytest.raises(InputError, match="contradicts provider 'cpu'"):
        create_runner(model[0], provider="cpu", require_cuda=True)


def test_bad_options():
    """Unknown runtimes and providers, and negative thread counts, are refused."""
    with pytest.raises(InputError, match="unknown runtime 'tensorflow'"):
        create_runner(b"", runtime="tensorflow")
    with pytest.raises(InputError, match="unknown provider 'rocm'"):
        create_runner(b"", provider="rocm")
    with pytest.raises(InputError, match="thread count must be 0"):
        create_runner(b"", threads=-1)


def test_every_toolchain_is_a_runtime():
    """The runtimes are ORT, OpenVINO and every toolchain."""
    assert RUNTIMES[:2] == ("onnxruntime", "openvino") and RUNTIMES[2:] == TOOLCHAINS


def test_path_input_and_specs(model, tmp_path, x):
    """A path (str or PathLike) loads like the proto; specs and outputs read from the graph."""
    path = tmp_path / "m.onnx"
    onnx.save(model[0], str(path))
    for arg in (path, str(path)):
        runner = create_runner(arg, provider="cpu")
        assert runner.input_specs() == [TensorSpec("x", np.dtype(np.float32), ("N", 2, 4, 4))]
        assert runner.output_names() == ["z", "y"]
    np.testing.assert_array_equal(
        runner.run({"x": x})["y"], create_runner(model[0], provider="cpu").run({"x": x})["y"]
    )


def test_large_models_go_through_a_file_with_external_data(model, monkeypatch, x,
                                                            scatter_reference):
    """Beyond protobuf's limit the model goes through a file; the caller's proto is untouched."""
    m, w = model
    monkeypatch.setattr(base, "_MAX_PROTO_BYTES", 0)
    runner = create_runner(m, provider="cpu")
    assert runner._keepalive is not None
    np.testing.assert_allclose(runner.run({"x": x})["y"], scatter_reference(x, w), rtol=1e-5,
                               atol=1e-5)
    # the caller's proto untouched
    assert np.array_equal(numpy_helper.to_array(m.graph.initializer[0]), w)


def test_describe():
    """RuntimeInfo describes where the model ran, with the note, and the detail when verbose."""
    note = "CUDAExecutionProvider unavailable: fell back to CPU"
    info = RuntimeInfo("onnxruntime", "CPU", ["CPUExecutionProvider"], note, "1.31.1",
                       "libcublasLt.so.13: missing")
    assert info.describe() == (
        "onnxruntime 1.31.1 on CPU (CUDAExecutionProvider unavailable: fell back to CPU)")
    assert info.describe(verbose=True).endswith(": libcublasLt.so.13: missing")
    assert RuntimeInfo("openvino", "CPU", ["CPU"], None, "2026.4.1").describe() == (
        "openvino 2026.4.1 on CPU")
