"""The emission registry, the chooser's fallbacks, refusals as data.

Every conversion is checked against ONNX Runtime running the original ConvTranspose.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import assert_equivalent, convtranspose_model, op_types

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.rewrite.emissions import registry
from deconv2sub.rewrite.emissions.base import Choice, Emission
from deconv2sub.targets import TargetProfile
from deconv2sub.targets.chooser import FIXED, STRATEGIES


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_strategy_lists_come_from_the_registry():
    """Every emission of the registry, and only those, is a strategy."""
    assert FIXED == tuple(registry.EMISSIONS) and STRATEGIES == ("default", "auto") + FIXED
    for name, emission in registry.EMISSIONS.items():
        choice = emission.choice(group=1, opset=17)
        assert emission.name == name and isinstance(choice, Choice) and choice.strategy == name
        assert emission.fallback is None or emission.fallback in registry.EMISSIONS


# (group, opset, asked order) -> (order, fold_crop) of every emission's fixed Choice, as the
# emissions declared them before the base class gave the defaults
CHOICE_CASES = [(1, 17, "auto"), (2, 17, "auto"), (1, 9, "auto"), (1, 17, "DCR"), (1, 17, "LCR")]
EXPECTED_CHOICES = {
    "depth_to_space": [("CRD", False), ("CRD", False), ("DCR", False), ("DCR", False),
                       ("CRD", False)],
    "low_rank_transpose": [("CRD", True)] * 5,
    "transpose": [("CRD", True)] * 5,
    "two_stage": [("LCR", True), ("CRD", True), ("LCR", True), ("LCR", True), ("LCR", True)],
    "transpose_gather": [("LCR", True), ("CRD", True), ("LCR", True), ("LCR", True),
                         ("LCR", True)],
    "pointwise_gemm": [("LCR", True), ("CRD", True), ("LCR", True), ("LCR", True), ("LCR", True)],
    "per_phase": [("CRD", "always")] * 5,
    "channels_last": [("LCR", True), ("CRD", True), ("LCR", True), ("DCR", True), ("LCR", True)],
    "per_phase_channels_last": [("CRD", "always")] * 5,
    "depth_to_space_3d": [("DCR", True), ("CRD", True), ("DCR", True), ("DCR", True),
                          ("DCR", True)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CHOICES))
def test_fixed_choice_of_every_emission(name):
    """Each emission's fixed Choice has the order and crop folding it declares, per case."""
    assert set(EXPECTED_CHOICES) == set(registry.EMISSIONS)
    emission = registry.get(name)
    got = []
    for group, opset, order in CHOICE_CASES:
        choice = emission.choice(group=group, opset=opset, order=order, reason="why")
        assert (choice.strategy, choice.reason) == (name, "why")
        got.append((choice.order, choice.fold_crop))
    assert got == EXPECTED_CHOICES[name]


def test_base_emission_defaults():
    """The base class applies everywhere, has no fallback and needs ``emit`` written."""
    bare = type("Bare", (Emission,), {"name": "bare", "order": "LCR"})()
    assert bare.fallback is None and bare.applies(None, None, 17, ConvertOptions()) is None
    assert bare.choice(group=3, opset=17) == Choice("bare", "CRD", True, "")
    with pytest.raises(NotImplementedError, match="bare"):
        bare.emit(None)


def test_unknown_emission_names_the_choices():
    """An unknown name is refused with the list of names."""
    with pytest.raises(ValueError, match="transpose_gather"):
        registry.get("no_such_emission")


def test_a_registered_emission_is_used_by_name(monkeypatch):
    """A new emission is one object plus a registry entry: the chooser and the pass find it."""
    base = registry.EMISSIONS["transpose"]

    class Renamed(Emission):
        """The transpose emission under another name: the base class gives the rest."""

        name = "renamed_transpose"

        def emit(self, request):
            """Write what ``transpose`` writes."""
            return base.emit(request)

    monkeypatch.setitem(registry.EMISSIONS, "renamed_transpose", Renamed())
    m = convtranspose_model([1, 3, 5, 4], _x((3, 2, 3, 3)), None, strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(strategy="renamed_transpose"))
    assert [n.strategy for n in report.nodes] == ["renamed_transpose"]
    assert report.nodes[0].shuffle == "Transpose"
    assert_equivalent(m, converted, {"X": _x((1, 3, 5, 4), 1)})


@pytest.mark.parametrize(
    "name, fallback", [("per_phase", "two_stage"), ("per_phase_channels_last", "channels_last")]
)
def test_the_chooser_follows_the_fallback_of_a_refusing_emission(name, fallback):
    """A refusing emission's fallback is taken by the chooser.

    Kernel 1, stride 2: a phase has no tap, the phase Convs refuse; the chooser takes the fallback
    (the pass does not decide it) and says so in the reason.
    """
    m = convtranspose_model([1, 3, 4, 5], _x((3, 2, 1, 1)), None, strides=[2, 2])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(strategy=name))
    node = report.nodes[0]
    assert node.rewritten and node.strategy == fallback
    assert "per_phase impossible (a phase without taps)" in node.strategy_reason
    assert "ConvTranspose" not in op_types(converted)
    assert_equivalent(m, converted, {"X": _x((1, 3, 4, 5), 2)})


def _skipped(model, options=None):
    report = deconv2sub.convert_model(model, options)[1]
    assert len(report.skipped) == 1 and not report.rewritten
    return report.skipped[0]


def test_refusal_codes_of_matching():
    """Matching declines a node with a code per cause."""
    w = _x((3, 2, 3, 3))
    runtime_weight = convtranspose_model([1, 3, 4, 4], w, None, weight_as="input", strides=[2, 2])
    assert _skipped(runtime_weight).code == "weight_not_constant"
    wrong_channels = convtranspose_model([1, 5, 4, 4], w, None, strides=[2, 2])
    assert _skipped(wrong_channels).code == "channel_mismatch"
    not_finite = w.copy()
    not_finite[0, 0, 0, 0] = np.inf
    assert (
        _skipped(convtranspose_model([1, 3, 4, 4], not_finite, None, strides=[2, 2])).code
        == "weight_not_finite"
    )


def test_refusal_codes_of_the_chooser_and_the_planner():
    """The chooser and the planner decline with their own codes."""
    m = convtranspose_model([1, 3, 4, 4], _x((3, 2, 3, 3)), None, strides=[2, 2])
    keeps = TargetProfile(name="keeps-s2", keep_strides=((2, 2),))
    entry = _skipped(m, ConvertOptions(target=keeps))
    assert entry.code == "target_keeps" and entry.to_dict()["code"] == "target_keeps"
    bad_pads = convtranspose_model(
        [1, 3, 4, 4], _x((3, 2, 3, 3)), None, strides=[2, 2], pads=[1, 1]
    )
    assert _skipped(bad_pads).code == "plan"
    symbolic = convtranspose_model(
        [1, 3, "H", "W"], _x((3, 2, 3, 3)), None, strides=[2, 2], output_shape=[9, 9]
    )
    entry = _skipped(symbolic, ConvertOptions(dynamic_shapes=False))
    assert entry.code == "runtime_crop"


def test_auto_without_a_measurer_is_refused_clearly():
    """``auto`` needs its measurer: the pass does not import the tuner."""
    import onnx_graphsurgeon as gs

    m = convtranspose_model([1, 3, 4, 4], _x((3, 2, 3, 3)), None, strides=[2, 2])
    with pytest.raises(ValueError, match="measure="):
        deconv2sub.convert_graph(gs.import_onnx(m), ConvertOptions(strategy="auto"))
