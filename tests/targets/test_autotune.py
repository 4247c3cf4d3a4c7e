"""deconv2sub.targets.autotune: candidates loaded by the runtime runners, timed by its loop."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from builders import assert_equivalent, convtranspose_model

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.runtime.ort import OrtRunner, cuda_status
from deconv2sub.targets import autotune


@pytest.fixture
def no_cache(monkeypatch):
    """No cache file, and an empty memory cache before and after."""
    monkeypatch.setenv("DECONV2SUB_CACHE_DIR", "")
    autotune.clear_cache()
    yield
    autotune.clear_cache()


def _model():
    """An ENet-like k3 s2 ConvTranspose with bias on X (1,4,6,6)."""
    rng = np.random.default_rng(31)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    return convtranspose_model([1, 4, 6, 6], w, b, strides=[2, 2], pads=[1, 1, 1, 1],
                               output_padding=[1, 1])


def test_auto_times_through_the_shared_loop_and_takes_the_fastest(monkeypatch, no_cache):
    """Candidates run as deployed (optimised, not spinning); the planted fastest one wins."""
    seen = {}

    def planted(runners, feeds, warmup, runs, interleave=True, progress=None):
        seen.update(runners=dict(runners), feeds=feeds, warmup=warmup, runs=runs,
                    interleave=interleave)
        names = list(runners)  # the last candidate measured is the fastest
        return {n: [1e-3 * (len(names) - i)] * runs for i, n in enumerate(names)}

    monkeypatch.setattr(autotune, "time_runners", planted)
    m = _model()
    options = ConvertOptions(strategy="auto", target="onnxruntime")  # every candidate allowed
    converted, report = deconv2sub.convert_model(m, options)
    names = list(seen["runners"])
    assert len(names) >= 3 and report.nodes[0].strategy == names[-1]
    assert (seen["warmup"], seen["runs"], seen["interleave"]) == (autotune.WARMUP, autotune.RUNS,
                                                                   True)
    assert all(list(f) == ["X"] and f["X"].shape == (1, 4, 6, 6) for f in seen["feeds"].values())
    for runner in seen["runners"].values():
        assert isinstance(runner, OrtRunner)
        so = runner.session.get_session_options()
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    device = runner.info.device
    where = f"onnxruntime {ort.__version__} on {device}"
    assert report.nodes[0].strategy_reason.startswith(
        f"auto: fastest measured on {where}: {names[-1]} 1.000 ms")
    assert_equivalent(m, converted, {"X": np.ones((1, 4, 6, 6), np.float32)})


def test_auto_for_a_toolchain_measures_on_onnxruntime(no_cache):
    """A toolchain's name as the tuning runtime measures on ONNX Runtime, as before."""
    _, report = deconv2sub.convert_model(_model(), ConvertOptions(strategy="auto",
                                                                  tune_runtime="ncnn"))
    assert report.nodes[0].strategy_reason.startswith("auto: fastest measured on onnxruntime ")


def test_auto_on_cuda_without_cuda_does_not_measure(no_cache):
    """Provider cuda where CUDA does not work: no measurement, the default emission, said so."""
    if cuda_status()[0]:
        pytest.skip("CUDA works on this machine")
    _, report = deconv2sub.convert_model(_model(), ConvertOptions(strategy="auto",
                                                                  tune_provider="cuda"))
    assert report.nodes[0].strategy_reason.startswith(
        "auto: could not measure on onnxruntime (cuda); ")


@pytest.mark.parametrize("target", ["portable", "rknn", "tflite", "ethos-u"])
def test_auto_takes_the_fastest_the_target_runs(monkeypatch, no_cache, target):
    """Candidates outside the target profile are measured but never chosen, and said so."""
    from deconv2sub.targets import resolve
    from deconv2sub.targets.conformance import violations

    def planted(runners, feeds, warmup, runs, interleave=True, progress=None):
        # transpose_gather (Gather, a 6-D Transpose: outside every profile here) is the fastest
        order = sorted(runners, key=lambda n: n != "transpose_gather")
        return {n: [1e-3 * (i + 1)] * runs for i, n in enumerate(order)}

    monkeypatch.setattr(autotune, "time_runners", planted)
    m = _model()
    converted, report = deconv2sub.convert_model(m, ConvertOptions(strategy="auto", target=target))
    node = report.nodes[0]
    assert node.strategy != "transpose_gather"
    assert "outside target " + target + ": transpose_gather (" in node.strategy_reason
    assert ["transpose_gather", "outside_target"] in node.declined
    assert violations(resolve(target), converted) == []
    assert_equivalent(m, converted, {"X": np.ones((1, 4, 6, 6), np.float32)})


def test_auto_on_3d_for_an_ncnn_like_target_can_pick_depth_to_space_3d(monkeypatch, no_cache):
    """The low-rank emissions are candidates: a profile that takes them gets the fastest of them."""
    from deconv2sub.targets import TargetProfile

    target = TargetProfile(name="ncnn3d", depth_to_space=("CRD",), max_rank=4,
                           depth_to_space_3d=True)
    timed = {}

    def planted(runners, feeds, warmup, runs, interleave=True, progress=None):
        timed.update(runners)
        order = sorted(runners, key=lambda n: n != "depth_to_space_3d")
        return {n: [1e-3 * (i + 1)] * runs for i, n in enumerate(order)}

    monkeypatch.setattr(autotune, "time_runners", planted)
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 2, 2, 2, 2)).astype(np.float32)
    m = convtranspose_model([1, 4, 2, 3, 3], w, None, strides=[2, 2, 2])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(strategy="auto", target=target))
    assert {"low_rank_transpose", "depth_to_space_3d"} <= set(timed)
    assert report.nodes[0].strategy == "depth_to_space_3d"
    assert_equivalent(m, converted, {"X": rng.standard_normal((1, 4, 2, 3, 3)).astype(np.float32)})
