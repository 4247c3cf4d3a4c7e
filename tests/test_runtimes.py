import sys

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from deconv2sub.errors import InputError, NoKernelError, RuntimeUnavailableError
from deconv2sub.runtime import runners as runtimes
from deconv2sub.runtime.runners import RuntimeInfo, create_runner, cuda_status
from deconv2sub.verify.inputs import TensorSpec

STRIDE = 2


def _conv_transpose_model(np_dtype=np.float32, node_name="", weights_seed=0):
    """x[N,2,4,4] -> ConvTranspose(stride 2, 3x3) -> y[N,3,9,9] -> Relu -> z."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    w = np.random.default_rng(weights_seed).standard_normal((2, 3, 3, 3)).astype(np_dtype)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[STRIDE, STRIDE], name=node_name),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("z", elem, None), helper.make_tensor_value_info("y", elem, None)],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), w


def _reference(x, w):
    """ConvTranspose (no padding, groups 1) by its definition: scatter-add of x * w."""
    n, _, h, wd = x.shape
    k = w.shape[2]
    y = np.zeros((n, w.shape[1], (h - 1) * STRIDE + k, (wd - 1) * STRIDE + k), np.float64)
    for i in range(k):
        for j in range(k):
            y[:, :, i : i + STRIDE * h : STRIDE, j : j + STRIDE * wd : STRIDE] += np.einsum("nchw,cd->ndhw", x, w[:, :, i, j])
    return y


@pytest.fixture(scope="module")
def model():
    return _conv_transpose_model()


@pytest.fixture
def x():
    return np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)


def test_auto_runs_where_cuda_truly_works_else_cpu_with_note(model, x):
    m, w = model
    runner = create_runner(m)
    info = runner.info
    assert info.runtime == "onnxruntime" and info.providers == runner.session.get_providers()
    if info.device == "CPU":  # this machine: no GPU, so CUDA must have fallen back
        assert info.providers == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider unavailable: fell back to CPU" in info.note
        assert info.describe().startswith("onnxruntime ") and info.describe().endswith(f"on CPU ({info.note})")
    else:
        assert info.device == "CUDA" and info.note is None and info.providers[0] == "CUDAExecutionProvider"
    out = runner.run({"x": x})
    assert list(out) == ["z", "y"]
    np.testing.assert_allclose(out["y"], _reference(x, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["z"], np.maximum(out["y"], 0))


def test_cpu_provider_has_no_note(model, x):
    runner = create_runner(model[0], provider="cpu", threads=1)
    assert runner.info.device == "CPU" and runner.info.note is None
    assert runner.info.providers == ["CPUExecutionProvider"]
    assert runner.session.get_session_options().intra_op_num_threads == 1
    assert list(runner.run({"x": x}, ["y"])) == ["y"]


def test_optimisation_level(model):
    import onnxruntime as ort

    off = create_runner(model[0], provider="cpu").session.get_session_options()
    on = create_runner(model[0], provider="cpu", optimize=True).session.get_session_options()
    assert off.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert on.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_require_cuda_raises_when_cuda_does_not_work(model):
    ok, reason = cuda_status()
    if ok:
        pytest.skip("CUDA works on this machine")
    with pytest.raises(RuntimeUnavailableError, match="^CUDA execution provider is not available: ") as e:
        create_runner(model[0], provider="cuda", require_cuda=True)
    assert reason in str(e.value)


def test_cuda_fallback_without_require(model):
    runner = create_runner(model[0], provider="cuda")
    if cuda_status()[0]:
        assert runner.info.device == "CUDA" and runner.info.note is None
    else:
        assert runner.info.device == "CPU" and "fell back to CPU" in runner.info.note
        assert runner.info.detail == cuda_status()[1]


def test_cuda_probe_is_cached_and_quiet(model, monkeypatch, capfd):
    monkeypatch.setattr(runtimes, "_cuda_probe", None)
    first = cuda_status()
    captured = capfd.readouterr()
    assert "libcu" not in captured.err + captured.out and "Failed to load" not in captured.err + captured.out

    def fail():
        raise AssertionError("CUDA probed twice")

    monkeypatch.setattr(runtimes, "_probe_cuda", fail)
    assert cuda_status() is first
    create_runner(model[0], provider="cuda")


def test_require_cuda_contradicts_cpu(model):
    with pytest.raises(InputError, match="contradicts provider 'cpu'"):
        create_runner(model[0], provider="cpu", require_cuda=True)


def test_float64_conv_transpose_has_no_cpu_kernel():
    m, _ = _conv_transpose_model(np.float64, node_name="up1")
    with pytest.raises(NoKernelError) as e:  # an InputError, that callers can single out
        create_runner(m, provider="cpu", what="original model")
    assert str(e.value) == (
        "onnxruntime cannot load original model: ONNX Runtime (CPU) has no kernel for ConvTranspose(float64) (node 'up1')"
    )


def test_invalid_model_bytes_and_paths(tmp_path):
    with pytest.raises(InputError, match="^onnxruntime cannot load converted model: .*protobuf") as e:
        create_runner(b"definitely not onnx", what="converted model")
    assert "\n" not in str(e.value) and "[ONNXRuntimeError]" not in str(e.value)
    with pytest.raises(InputError, match="cannot load model"):
        create_runner(tmp_path / "missing.onnx")


def test_path_input_and_specs(model, tmp_path, x):
    path = tmp_path / "m.onnx"
    onnx.save(model[0], str(path))
    for arg in (path, str(path)):
        runner = create_runner(arg, provider="cpu")
        assert runner.input_specs() == [TensorSpec("x", np.dtype(np.float32), ("N", 2, 4, 4))]
        assert runner.output_names() == ["z", "y"]
    np.testing.assert_array_equal(
        runner.run({"x": x})["y"], create_runner(model[0], provider="cpu").run({"x": x})["y"]
    )


def test_large_models_go_through_a_file_with_external_data(model, monkeypatch, x):
    m, w = model
    monkeypatch.setattr(runtimes, "_MAX_PROTO_BYTES", 0)
    runner = create_runner(m, provider="cpu")
    assert runner._keepalive is not None
    np.testing.assert_allclose(runner.run({"x": x})["y"], _reference(x, w), rtol=1e-5, atol=1e-5)
    assert np.array_equal(numpy_helper.to_array(m.graph.initializer[0]), w)  # caller's proto untouched


def test_run_errors_are_input_errors(model):
    runner = create_runner(model[0], provider="cpu")
    with pytest.raises(InputError, match="failed to run model: .*Expected: 2") as e:
        runner.run({"x": np.zeros((1, 3, 4, 4), np.float32)})
    assert not isinstance(e.value, NoKernelError)
    with pytest.raises(InputError, match="has no output 'nope'"):
        runner.run({"x": np.zeros((1, 2, 4, 4), np.float32)}, ["nope"])


def test_bad_options():
    with pytest.raises(InputError, match="unknown runtime 'tensorflow'"):
        create_runner(b"", runtime="tensorflow")
    with pytest.raises(InputError, match="unknown provider 'rocm'"):
        create_runner(b"", provider="rocm")


def test_describe():
    note = "CUDAExecutionProvider unavailable: fell back to CPU"
    info = RuntimeInfo("onnxruntime", "CPU", ["CPUExecutionProvider"], note, "1.31.1", "libcublasLt.so.13: missing")
    assert info.describe() == "onnxruntime 1.31.1 on CPU (CUDAExecutionProvider unavailable: fell back to CPU)"
    assert info.describe(verbose=True).endswith(": libcublasLt.so.13: missing")
    assert RuntimeInfo("openvino", "CPU", ["CPU"], None, "2026.4.1").describe() == "openvino 2026.4.1 on CPU"


def test_openvino_matches_onnxruntime(model, x):
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


def test_openvino_errors(model, monkeypatch):
    pytest.importorskip("openvino")
    with pytest.raises(RuntimeUnavailableError, match="OpenVINO has no CUDA"):
        create_runner(model[0], runtime="openvino", provider="cuda")
    with pytest.raises(InputError, match="^openvino cannot load converted model: Unable to read the model"):
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
    with pytest.raises(NoKernelError, match="^openvino cannot load model: No conversion rule found .*NoSuchOp"):
        create_runner(unknown_op, runtime="openvino")
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    with pytest.raises(RuntimeUnavailableError, match=r"pip install 'deconv2sub\[openvino\]'"):
        create_runner(model[0], runtime="openvino")
