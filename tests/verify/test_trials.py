"""deconv2sub.verify.trials: trial shapes and feeds, the inputs two models both accept."""

from __future__ import annotations

import numpy as np
import pytest

from deconv2sub.errors import InputError
from deconv2sub.verify.inputs import TensorSpec, save_npz
from deconv2sub.verify.options import VerifyOptions
from deconv2sub.verify.trials import make_trial_feeds, merge_input_specs, plan_trials

F32 = np.dtype(np.float32)


def test_merge_input_specs():
    """A dim fixed in either model is fixed in the merged spec; a rank mismatch is refused."""
    merged = merge_input_specs([TensorSpec("x", F32, ("N", 3, "H", None))],
                               [TensorSpec("x", F32, (1, 3, "h", 8))])
    assert merged == [TensorSpec("x", F32, (1, 3, "H", 8))]
    with pytest.raises(InputError, match="incompatible"):
        merge_input_specs([TensorSpec("x", F32, (1, 3))], [TensorSpec("x", F32, (1, 3, 4))])


def test_merge_input_specs_refusals():
    """Different names, element types or fixed sizes are each refused with what differs."""
    x = TensorSpec("x", F32, (1, 3))
    with pytest.raises(InputError, match="the candidate lacks 'x'; only the candidate has 'y'"):
        merge_input_specs([x], [TensorSpec("y", F32, (1, 3))])
    with pytest.raises(InputError, match="'x' is float32 in the original but float64"):
        merge_input_specs([x], [TensorSpec("x", np.dtype(np.float64), (1, 3))])
    with pytest.raises(InputError, match=r"'x' has shape \(1,3\) in the original but \(1,4\)"):
        merge_input_specs([x], [TensorSpec("x", F32, (1, 4))])


def test_plan_trials_default_and_explicit_counts():
    """Static inputs: one trial; symbolic: two of different sizes; an explicit count as given."""
    static = [TensorSpec("x", F32, (1, 3, 8, 8))]
    symbolic = [TensorSpec("x", F32, ("N", 3, "H", "W"))]
    assert plan_trials(static, VerifyOptions()) == [{"x": (1, 3, 8, 8)}]
    two = plan_trials(symbolic, VerifyOptions())
    assert len(two) == 2 and two[0] != two[1]
    assert plan_trials(static, VerifyOptions(trials=3)) == [{"x": (1, 3, 8, 8)}] * 3


def test_trial_feeds_are_seeded_per_trial():
    """Trial i uses seed + i: the same options give the same data, trials differ."""
    specs = [TensorSpec("x", F32, (1, 3, 4, 4))]
    feeds, shapes, seeds = make_trial_feeds(specs, VerifyOptions(trials=2, seed=7))
    again, _, _ = make_trial_feeds(specs, VerifyOptions(trials=2, seed=7))
    assert seeds == [7, 8] and shapes == [{"x": (1, 3, 4, 4)}] * 2
    assert not np.array_equal(feeds[0]["x"], feeds[1]["x"])
    for a, b in zip(feeds, again):
        np.testing.assert_array_equal(a["x"], b["x"])


def test_trial_feeds_from_a_file(tmp_path):
    """With --inputs: one trial, the file's arrays, no seed."""
    specs = [TensorSpec("x", F32, ("N", 3))]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_npz(str(tmp_path / "in.npz"), {"x": x})
    options = VerifyOptions(inputs_npz=str(tmp_path / "in.npz"))
    feeds, shapes, seeds = make_trial_feeds(specs, options)
    assert seeds == [None] and shapes == [{"x": (2, 3)}]
    np.testing.assert_array_equal(feeds[0]["x"], x)
