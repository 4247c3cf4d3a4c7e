"""deconv2sub.runtime.ort: ONNX Runtime sessions, the CUDA probe and fallback, ORT's errors."""

import numpy as np
import pytest

from deconv2sub.errors import InputError, NoKernelError, RuntimeUnavailableError
from deconv2sub.runtime import ort as ort_runtime
from deconv2sub.runtime.ort import cuda_status
from deconv2sub.runtime.runners import create_runner


def test_auto_runs_where_cuda_truly_works_else_cpu_with_note(model, x, scatter_reference):
    """Provider auto runs on CUDA where it truly works, else CPU with a note; outputs are right."""
    m, w = model
    runner = create_runner(m)
    info = runner.info
    assert info.runtime == "onnxruntime" and info.providers == runner.session.get_providers()
    if info.device == "CPU":  # this machine: no GPU, so CUDA must have fallen back
        assert info.providers == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider unavailable: fell back to CPU" in info.note
        assert info.describe().startswith("onnxruntime ")
        assert info.describe().endswith(f"on CPU ({info.note})")
    else:
        assert info.device == "CUDA" and info.note is None
        assert info.providers[0] == "CUDAExecutionProvider"
    out = runner.run({"x": x})
    assert list(out) == ["z", "y"]
    np.testing.assert_allclose(out["y"], scatter_reference(x, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["z"], np.maximum(out["y"], 0))


def test_cpu_provider_has_no_note(model, x):
    """Provider "cpu" runs on CPU without a fallback note, with the thread count asked for."""
    runner = create_runner(model[0], provider="cpu", threads=1)
    assert runner.info.device == "CPU" and runner.info.note is None
    assert runner.info.providers == ["CPUExecutionProvider"]
    assert runner.session.get_session_options().intra_op_num_threads == 1
    assert list(runner.run({"x": x}, ["y"])) == ["y"]


def test_optimisation_level(model):
    """Graph optimisations are off by default and on with ``optimize``."""
    import onnxruntime as ort

    off = create_runner(model[0], provider="cpu").session.get_session_options()
    on = create_runner(model[0], provider="cpu", optimize=True).session.get_session_options()
    assert off.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert on.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_spinning_is_on_by_default_and_off_on_request(model):
    """``spin=False`` stops idle intra-op workers spinning; the default leaves ORT's."""
    key = "session.intra_op.allow_spinning"
    default = create_runner(model[0], provider="cpu").session.get_session_options()
    quiet = create_runner(model[0], provider="cpu", spin=False).session.get_session_options()
    assert quiet.get_session_config_entry(key) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        default.get_session_config_entry(key)  # unset: ORT's default (spinning)


def test_require_cuda_raises_when_cuda_does_not_work(model):
    """``require_cuda`` turns a CUDA fallback into RuntimeUnavailableError with the reason."""
    ok, reason = cuda_status()
    if ok:
        pytest.skip("CUDA works on this machine")
    with pytest.raises(RuntimeUnavailableError,
                       match="^CUDA execution provider is not available: ") as e:
        create_runner(model[0], provider="cuda", require_cuda=True)
    assert reason in str(e.value)


def test_cuda_fallback_without_require(model):
    """Provider "cuda" without ``require_cuda`` falls back to CPU with the probe's reason."""
    runner = create_runner(model[0], provider="cuda")
    if cuda_status()[0]:
        assert runner.info.device == "CUDA" and runner.info.note is None
    else:
        assert runner.info.device == "CPU" and "fell back to CPU" in runner.info.note
        assert runner.info.detail == cuda_status()[1]


def test_cuda_probe_is_cached_and_quiet(model, monkeypatch, capfd):
    """The CUDA probe prints nothing and runs once per process."""
    monkeypatch.setattr(ort_runtime, "_cuda_probe", None)
    first = cuda_status()
    captured = capfd.readouterr()
    text = captured.err + captured.out
    assert "libcu" not in text and "Failed to load" not in text

    def fail():
        raise AssertionError("CUDA probed twice")

    monkeypatch.setattr(ort_runtime, "_probe_cuda", fail)
    assert cuda_status() is first
    create_runner(model[0], provider="cuda")


def test_float64_conv_transpose_has_no_cpu_kernel(make_model):
    """A missing kernel is a NoKernelError naming the op, its dtype and the node."""
    m, _ = make_model(np.float64, node_name="up1")
    with pytest.raises(NoKernelError) as e:  # an InputError, that callers can single out
        create_runner(m, provider="cpu", what="original model")
    assert str(e.value) == (
        "onnxruntime cannot load original model: ONNX Runtime (CPU) has no kernel for "
        "ConvTranspose(float64) (node 'up1')"
    )


def test_invalid_model_bytes_and_paths(tmp_path):
    """Unreadable bytes and missing files are one-line InputErrors."""
    with pytest.raises(InputError,
                       match="^onnxruntime cannot load converted model: .*protobuf") as e:
        create_runner(b"definitely not onnx", what="converted model")
    assert "\n" not in str(e.value) and "[ONNXRuntimeError]" not in str(e.value)
    with pytest.raises(InputError, match="cannot load model"):
        create_runner(tmp_path / "missing.onnx")


def test_run_errors_are_input_errors(model):
    """A failed run and an unknown output name are InputErrors, not NoKernelErrors."""
    runner = create_runner(model[0], provider="cpu")
    with pytest.raises(InputError, match="failed to run model: .*Expected: 2") as e:
        runner.run({"x": np.zeros((1, 3, 4, 4), np.float32)})
    assert not isinstance(e.value, NoKernelError)
    with pytest.raises(InputError, match="has no output 'nope'"):
        runner.run({"x": np.zeros((1, 2, 4, 4), np.float32)}, ["nope"])


def test_run_for_timing_runs_and_reports_errors_as_run_does(model, x):
    """The timing call returns nothing and translates ORT's errors as ``run`` does."""
    runner = create_runner(model[0], provider="cpu")
    assert runner.run_for_timing({"x": x}) is None
    with pytest.raises(InputError, match="failed to run model: .*Expected: 2"):
        runner.run_for_timing({"x": np.zeros((1, 3, 4, 4), np.float32)})
