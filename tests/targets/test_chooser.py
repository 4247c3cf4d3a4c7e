"""Strategy selection.

Fixed strategies, ``auto`` (measured, cached), the CLI option, and the report fields.
"""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import onnx
import pytest
from builders import assert_equivalent, convtranspose_model, op_types

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.targets import autotune
from deconv2sub.targets import chooser as strategy

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(5))


def _x(shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh auto-tuning cache directory for the test."""
    monkeypatch.setenv("DECONV2SUB_CACHE_DIR", str(tmp_path))
    autotune.clear_cache()
    yield tmp_path
    autotune.clear_cache()


def _enet(shape=(1, 4, 6, 6)):
    return convtranspose_model(
        list(shape),
        _x((shape[1], 3, 3, 3)),
        _x((3,)),
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 1],
    )


def test_default_is_fixed_and_reported():
    """The default strategy is fixed, reproducible and reported."""
    m = _enet()
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="onnxruntime"))
    entry = report.nodes[0]
    # ENet's k3 s2 p1 op1 on the ONNX Runtime rule: phase Convs (see DEFAULT_ORT in test_sinking)
    assert entry.strategy == "per_phase" and entry.strategy_reason.startswith("default: ")
    again, _ = deconv2sub.convert_model(m, ConvertOptions(target="onnxruntime"))
    assert again.SerializeToString() == converted.SerializeToString()  # reproducible
    data = entry.to_dict()
    assert data["strategy"] == "per_phase" and data["sunk"] == []
    assert data["strategy_reason"] == entry.strategy_reason


def test_unknown_strategy_is_an_error():
    """An unknown strategy name is a ValueError."""
    with pytest.raises(ValueError, match="unknown strategy"):
        deconv2sub.convert_model(_enet(), ConvertOptions(strategy="fastest"))


def test_legacy_knobs_select_depth_to_space():
    """The legacy ``shuffle`` option selects the depth_to_space strategy."""
    _, report = deconv2sub.convert_model(_enet(), ConvertOptions(shuffle="reshape"))
    assert (
        report.nodes[0].strategy == "depth_to_space"
        and report.nodes[0].shuffle == "Reshape/Transpose"
    )


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_auto_measures_and_caches(cache_dir, runtime):
    """``auto`` measures the candidates, caches the choice and stays exact."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    m = _enet()
    options = ConvertOptions(strategy="auto", tune_runtime=runtime, target="onnxruntime")
    converted, report = deconv2sub.convert_model(m, options)
    entry = report.nodes[0]
    assert entry.strategy in strategy.FIXED
    assert entry.strategy_reason.startswith("auto: fastest measured on " + runtime)
    measured = re.findall(r"(\w+) [\d.]+ ms", entry.strategy_reason)
    assert measured[0] == entry.strategy and set(measured) <= set(strategy.FIXED)  # fastest first
    assert_equivalent(m, converted, {"X": _x((1, 4, 6, 6))})
    data = json.loads((cache_dir / "strategy.json").read_text())
    assert len(data) == 1 and next(iter(data.values()))["choice"] == entry.strategy
    # second conversion: from the cache (memory), then from disk after the memory cache is cleared
    _, again = deconv2sub.convert_model(m, options)
    assert (
        again.nodes[0].strategy == entry.strategy
        and again.nodes[0].strategy_reason.count("(cached)") == 1
    )
    autotune.clear_cache()
    _, third = deconv2sub.convert_model(m, options)
    assert (
        third.nodes[0].strategy == entry.strategy
        and third.nodes[0].strategy_reason.count("(cached)") == 1
    )


def test_auto_cache_key_separates_shapes_and_runtimes(cache_dir):
    """The auto cache keeps one entry per input shape, keyed with the runtime."""
    deconv2sub.convert_model(_enet((1, 4, 6, 6)), ConvertOptions(strategy="auto"))
    deconv2sub.convert_model(_enet((1, 4, 7, 5)), ConvertOptions(strategy="auto"))
    data = json.loads((cache_dir / "strategy.json").read_text())
    assert len(data) == 2 and all(k.split("|")[1] == "onnxruntime" for k in data)


def test_auto_without_input_size_falls_back(cache_dir):
    """``auto`` without an input size falls back to the default and caches nothing."""
    m = convtranspose_model(
        ["N", 4, "H", "W"], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = deconv2sub.convert_model(m, ConvertOptions(strategy="auto"))
    entry = report.nodes[0]
    assert entry.strategy_reason.startswith("auto: input size unknown")
    # the fallback is the target profile's own default rule (portable here, onnxruntime's there)
    portable = deconv2sub.convert_model(m, ConvertOptions())[1]
    assert entry.strategy == portable.nodes[0].strategy
    ort_auto = deconv2sub.convert_model(m, ConvertOptions(strategy="auto", target="onnxruntime"))[1]
    ort_rule = deconv2sub.convert_model(m, ConvertOptions(target="onnxruntime"))[1]
    assert ort_auto.nodes[0].strategy == ort_rule.nodes[0].strategy != entry.strategy
    assert not (cache_dir / "strategy.json").exists()
    assert_equivalent(m, converted, {"X": _x((2, 4, 5, 3))})


def test_auto_candidates():
    """``auto``'s candidates include per_phase only where it saves zero taps or folds a crop."""
    import onnx_graphsurgeon as gs

    from deconv2sub.rewrite.match import check

    def material(model):
        g = gs.import_onnx(model)
        return check(g.nodes[0], graph=g)

    assert "per_phase" in autotune.candidates(material(_enet()), 17)  # k3 s2: 9 of 16 taps
    dcgan = convtranspose_model(
        [1, 4, 6, 6], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1]
    )
    # k4 s2 p1: per-phase Convs fold the crop
    assert "per_phase" in autotune.candidates(material(dcgan), 17)
    unet = convtranspose_model([1, 4, 6, 6], _x((4, 3, 2, 2)), None, strides=[2, 2])
    assert "per_phase" not in autotune.candidates(material(unet), 17)  # k2 s2: no zero tap, no crop


def test_cli_strategy_option(tmp_path, cache_dir):
    """``--strategy`` selects the emission in the CLI and the report shows it."""
    from click.testing import CliRunner

    from deconv2sub.cli import main

    src = tmp_path / "m.onnx"
    onnx.save(_enet(), src)
    for name in ("per_phase", "depth_to_space", "auto"):
        out = tmp_path / f"{name}.onnx"
        res = CliRunner().invoke(
            main, ["convert", str(src), "-o", str(out), "--strategy", name, "--json", "-q"]
        )
        assert res.exit_code == 0, res.output
        converted = onnx.load(out)
        assert "ConvTranspose" not in op_types(converted)
        if name == "per_phase":
            assert op_types(converted).count("Conv") == 4
        if name == "depth_to_space":
            assert "DepthToSpace" in op_types(converted)


def test_cli_target_picks_the_rule(tmp_path):
    """The default target is portable whatever --runtime verifies on.

    --target names the rule; inspect shows it.
    """
    pytest.importorskip("openvino")
    from click.testing import CliRunner

    from deconv2sub.cli import main

    src = tmp_path / "m.onnx"
    onnx.save(convtranspose_model([1, 4, 6, 6], _x((4, 3, 2, 2)), None, strides=[2, 2]), src)
    for extra, strategy_name in [
        ([], "depth_to_space"),
        (["--runtime", "openvino"], "depth_to_space"),
        (["--runtime", "openvino", "--target", "openvino"], "channels_last"),
        (["--target", "onnxruntime"], "transpose_gather"),
    ]:
        out = tmp_path / f"{len(extra)}_{strategy_name}.onnx"
        res = CliRunner().invoke(
            main, ["convert", str(src), "-o", str(out), "--json", "-q", *extra]
        )
        assert res.exit_code == 0, res.output
        node = json.loads(res.stdout)["conversion"]["nodes"][0]
        assert node["strategy"] == strategy_name, (extra, node["strategy_reason"])
    res = CliRunner().invoke(main, ["inspect", str(src), "--target", "openvino"])
    assert res.exit_code == 0 and "channels-last Transpose" in res.output
