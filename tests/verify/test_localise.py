"""deconv2sub.verify.localise: the first diverging shared tensor, the diverging rewritten nodes."""

from __future__ import annotations

import numpy as np
import onnx
from surface_builders import (
    add_chain_model,
    converted,
    perturb_conv_weight,
    rename_output,
    two_deconv_model,
)

from deconv2sub.verify.localise import expose_tensors, localise_shared, shared_tensors
from deconv2sub.verify.options import VerifyOptions


def test_localisation_narrows_in_rounds_to_the_exact_tensor():
    """40 shared tensors, at most 4 exposed per round: found in several rounds, exactly."""
    ref, cand = add_chain_model(40), add_chain_model(40, bump_at=23)
    feeds = {"x": np.zeros((1, 4), np.float32)}
    loc = localise_shared(ref, cand, feeds, VerifyOptions(localise_limit=4))
    assert loc.first is not None and loc.first.tensor == "t23"
    assert loc.first.original_node == "add23"
    assert loc.shared == 40 and loc.rounds >= 2 and loc.compared < 40 and loc.exact
    loc_all = localise_shared(ref, cand, feeds, VerifyOptions(localise_limit=256))
    assert loc_all.first.tensor == "t23" and loc_all.rounds == 1
    assert loc_all.diverging == 40 - 23


def test_localisation_without_shared_names():
    """Only the graph output is shared (and it diverges): that is where localisation stops."""
    ref = add_chain_model(3)
    cand = rename_output(rename_output(add_chain_model(3, bump_at=0), "t0", "a0"), "t1", "a1")
    loc = localise_shared(ref, cand, {"x": np.zeros((1, 4), np.float32)})
    assert loc.shared == 1 and loc.first.tensor == "out"


def test_equal_models_have_no_divergence():
    """Two equal models: every shared tensor compared in one round, none diverges, with a note."""
    m = add_chain_model(5)
    loc = localise_shared(m, m, {"x": np.ones((1, 4), np.float32)})
    assert loc.first is None and loc.compared == loc.shared == 5 and loc.diverging == 0
    assert loc.note.startswith("no shared tensor diverges")


def test_expose_tensors_adds_produced_tensors_only_to_a_copy():
    """Produced tensors become outputs once; unknown names are skipped; the input is untouched."""
    m = add_chain_model(3)
    before = m.SerializeToString()
    exposed = expose_tensors(m, ["t0", "t1", "t1", "nope", "out"])
    assert [o.name for o in exposed.graph.output] == ["out", "t0", "t1"]
    assert exposed.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.SerializeToString() == before


def test_shared_tensors_of_a_rewrite_include_its_output_names():
    """The rewrite keeps each ConvTranspose's output name: both models share it, in order."""
    original = two_deconv_model()
    shared = shared_tensors(original, converted(original))
    assert {"y1", "y2"} <= set(shared) and shared[-1] == "out"
    assert shared.index("y1") < shared.index("y2")
    bad = perturb_conv_weight(converted(original), "up2/subpixel_conv")
    feeds = {"x": np.random.default_rng(41).standard_normal((1, 8, 5, 5)).astype(np.float32)}
    loc = localise_shared(original, bad, feeds)
    assert loc.first is not None and loc.first.tensor == "y2"
