"""deconv2sub.verify.running: which runtime runs which model, load errors marked, tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from surface_builders import add_chain_model

from deconv2sub.errors import InputError
from deconv2sub.verify.options import VerifyOptions
from deconv2sub.verify.running import (
    TOOLCHAIN_TOLERANCES,
    compare_for_runtime,
    load_runner,
    reference_runtime,
    run_all,
)


def test_reference_runtime():
    """The original runs where the candidate does, except on toolchains (ORT), unless told."""
    assert reference_runtime(VerifyOptions()) == "onnxruntime"
    assert reference_runtime(VerifyOptions(runtime="openvino")) == "openvino"
    assert reference_runtime(VerifyOptions(runtime="ncnn")) == "onnxruntime"
    assert reference_runtime(VerifyOptions(runtime="ncnn", reference_runtime="openvino")) == (
        "openvino")


def test_a_load_failure_is_marked_load_a_run_failure_is_not():
    """The declared ``stage`` field says which step failed."""
    with pytest.raises(InputError) as e:
        load_runner(b"not a model", VerifyOptions(provider="cpu"), "the candidate model")
    assert e.value.stage == "load"
    m = add_chain_model(2)
    with pytest.raises(InputError) as e:
        run_all(m, [{"x": np.zeros((1, 5), np.float32)}], VerifyOptions(provider="cpu"), "model")
    assert e.value.stage is None and "failed to run" in str(e.value)
    outputs, info = run_all(m, [{"x": np.zeros((1, 4), np.float32)}] * 2,
                            VerifyOptions(provider="cpu"), "model")
    assert len(outputs) == 2 and info.device == "CPU"
    np.testing.assert_allclose(outputs[0]["out"], np.full((1, 4), 0.2, np.float32))


def test_tolerances_per_runtime():
    """Toolchains default to their tolerances; OpenVINO's float64 gets float32's, with a note."""
    r = {"y": np.ones(4, np.float32)}
    c = {"y": np.ones(4, np.float32) * (1 + 5e-4)}
    assert not compare_for_runtime(r, c, VerifyOptions()).passed
    assert compare_for_runtime(r, c, VerifyOptions(runtime="ncnn")).passed
    assert TOOLCHAIN_TOLERANCES[0] > 5e-4
    assert not compare_for_runtime(r, c, VerifyOptions(runtime="ncnn", rtol=1e-5)).passed
    r64 = {"y": np.ones(4, np.float64)}
    c64 = {"y": np.ones(4, np.float64) * (1 + 1e-6)}
    assert not compare_for_runtime(r64, c64, VerifyOptions()).passed
    on_ov = compare_for_runtime(r64, c64, VerifyOptions(runtime="openvino"))
    assert on_ov.passed and "float32 tolerances" in on_ov.outputs[0].note
