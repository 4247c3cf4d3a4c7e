"""deconv2sub.verify.inputs: input specs, shapes for symbolic dims, random feeds, .npz files."""

import logging

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from deconv2sub.errors import InputError, OutputError
from deconv2sub.verify.inputs import (
    TensorSpec,
    load_npz,
    make_feeds,
    model_input_specs,
    parse_input_shapes,
    resolve_shapes,
    save_npz,
)


def _model(inputs, initializers=(), ir_version=9):
    node = helper.make_node("Identity", [inputs[0].name], ["out"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", list(inputs), [out], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=ir_version)


def test_model_input_specs_dims_and_dtypes():
    """Specs keep named, fixed and unknown dims, dtypes, and unknown ranks."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, None])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [2])
    h = helper.make_tensor_value_info("h", TensorProto.FLOAT16, None)  # rank unknown
    specs = model_input_specs(_model([x, ids, h]))
    assert specs == [
        TensorSpec("x", np.dtype(np.float32), ("N", 3, None)),
        TensorSpec("ids", np.dtype(np.int64), (2,)),
        TensorSpec("h", np.dtype(np.float16), None),
    ]


def test_model_input_specs_skips_initializers_listed_as_inputs():
    """Initializers listed as graph inputs are not inputs to feed."""
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    w_in = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2])
    specs = model_input_specs(_model([x, w_in], [w], ir_version=3))
    assert [s.name for s in specs] == ["x"]


def test_model_input_specs_rejects_non_tensor_input():
    """A non-tensor graph input is refused."""
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    with pytest.raises(InputError, match="'s'.*not a tensor"):
        model_input_specs(_model([seq]))


def test_parse_input_shapes_forms():
    """NAME:D1,D2,... forms parse, names with colons included."""
    got = parse_input_shapes(["x:1,3,224,224", "y:1x3x8X8", "input:0:2,5", " z : 7 "])
    assert got == {"x": (1, 3, 224, 224), "y": (1, 3, 8, 8), "input:0": (2, 5), "z": (7,)}


@pytest.mark.parametrize("bad", ["x", ":1,2", "x:1,a", "x:", "x:-1,2", "x:1,,2", "x:1.5"])
def test_parse_input_shapes_errors(bad):
    """Malformed --input-shape values are refused."""
    with pytest.raises(InputError, match="bad input shape") as e:
        parse_input_shapes([bad])
    assert "\n" not in str(e.value)


def test_parse_input_shapes_duplicate():
    """An input given twice is refused."""
    with pytest.raises(InputError, match="'x' given more than once"):
        parse_input_shapes(["x:1", "x:2"])


def _specs():
    return [
        TensorSpec("a", np.dtype(np.float32), ("batch", 3, "h", None)),
        TensorSpec("b", np.dtype(np.float32), ("batch", "h")),
    ]


@pytest.mark.parametrize(
    "trial, a, b",
    [
        (0, (1, 3, 16, 16), (1, 16)),
        (1, (2, 3, 32, 32), (2, 32)),
        (2, (3, 3, 48, 48), (3, 48)),
        (3, (4, 3, 64, 64), (4, 64)),
    ],
)
def test_resolve_shapes_defaults_per_trial(trial, a, b):
    """Symbolic dims get the default sizes of each trial."""
    assert resolve_shapes(_specs(), {}, trial=trial) == {"a": a, "b": b}


def test_resolve_shapes_symbolic_dims_are_shared_across_inputs():
    """A dim name shared by inputs gets one size."""
    specs = [TensorSpec("a", np.dtype(np.float32), (1, "n")),
             TensorSpec("b", np.dtype(np.float32), ("n", 1))]
    shapes = resolve_shapes(specs, {})
    assert shapes["a"][1] == shapes["b"][0] == 16  # "n" first seen at axis 1 -> 16, then shared


def test_resolve_shapes_override_propagates_dim_param():
    """A given shape sets its dim names for the other inputs."""
    shapes = resolve_shapes(_specs(), {"a": (4, 3, 9, 5)})
    assert shapes == {"a": (4, 3, 9, 5), "b": (4, 9)}


def test_resolve_shapes_override_errors():
    """Given shapes contradicting the model or each other, or naming no input, are refused."""
    with pytest.raises(InputError, match="input 'a'.*rank 3.*rank 4"):
        resolve_shapes(_specs(), {"a": (1, 3, 8)})
    with pytest.raises(InputError, match="input 'a'.*gives 4 for axis 1.*fixes it to 3"):
        resolve_shapes(_specs(), {"a": (1, 4, 8, 8)})
    with pytest.raises(InputError, match="'c', which is not a model input"):
        resolve_shapes(_specs(), {"c": (1,)})
    with pytest.raises(InputError, match="dimension 'h' is 8 for input 'a' but 9 for input 'b'"):
        resolve_shapes(_specs(), {"a": (1, 3, 8, 8), "b": (1, 9)})


def test_resolve_shapes_unknown_rank_needs_override():
    """An input of unknown rank needs its shape given."""
    specs = [TensorSpec("x", np.dtype(np.float32), None)]
    with pytest.raises(InputError, match="'x' has unknown rank"):
        resolve_shapes(specs, {})
    assert resolve_shapes(specs, {"x": (2, 2)}) == {"x": (2, 2)}


def _feed_specs():
    return [
        TensorSpec("f32", np.dtype(np.float32), (2, 3)),
        TensorSpec("f16", np.dtype(np.float16), (4,)),
        TensorSpec("i64", np.dtype(np.int64), (50,)),
        TensorSpec("u8", np.dtype(np.uint8), (5,)),
        TensorSpec("flag", np.dtype(np.bool_), (50,)),
        TensorSpec("s", np.dtype(np.float64), ()),
    ]


def test_make_feeds_types_shapes_and_ranges():
    """Feeds have the specs' dtypes and shapes, in the default ranges."""
    specs = _feed_specs()
    shapes = {s.name: s.shape for s in specs}
    feeds = make_feeds(specs, shapes, seed=3)
    for s in specs:
        assert feeds[s.name].dtype == s.dtype and feeds[s.name].shape == s.shape
    assert feeds["i64"].min() >= 0 and feeds["i64"].max() < 4 and len(np.unique(feeds["i64"])) == 4
    assert feeds["flag"].any() and not feeds["flag"].all()
    assert feeds["f32"].std() > 0.1


def test_make_feeds_is_seeded():
    """The same seed gives the same feeds, another seed others."""
    specs = _feed_specs()
    shapes = {s.name: s.shape for s in specs}
    a, b, c = (make_feeds(specs, shapes, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["f32"], c["f32"])


def test_make_feeds_val_range():
    """A value range bounds floats and integers; an inverted range is refused."""
    specs = [TensorSpec("x", np.dtype(np.float32), (1000,)),
             TensorSpec("i", np.dtype(np.int32), (1000,))]
    feeds = make_feeds(specs, {"x": (1000,), "i": (1000,)}, val_range=(-0.5, 10.0))
    assert feeds["x"].min() >= -0.5 and feeds["x"].max() <= 10.0 and feeds["x"].max() > 5
    assert feeds["i"].min() >= 0 and feeds["i"].max() == 10
    with pytest.raises(InputError, match="low must not exceed high"):
        make_feeds(specs, {"x": (1,), "i": (1,)}, val_range=(1.0, 0.0))


def test_make_feeds_rejects_types_it_cannot_generate():
    """Types without a generator (complex64) are refused."""
    specs = [TensorSpec("x", np.dtype(np.complex64), (2,))]
    with pytest.raises(InputError, match="'x' of type complex64"):
        make_feeds(specs, {"x": (2,)})


def test_make_feeds_bfloat16():
    """bfloat16 (ml_dtypes, numpy kind "V") is a float type: random normal values, rounded."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    feeds = make_feeds([TensorSpec("x", np.dtype(ml_dtypes.bfloat16), (64,))], {"x": (64,)})
    assert feeds["x"].dtype == np.dtype(ml_dtypes.bfloat16)
    assert np.isfinite(feeds["x"].astype(np.float32)).all()


def test_npz_round_trip_with_awkward_names(tmp_path):
    """Names with colons and numpy's reserved keywords survive .npz."""
    arrays = {"input:0": np.arange(6, dtype=np.float32).reshape(2, 3), "file": np.array([1]),
              "allow_pickle": np.array(True)}
    path = tmp_path / "feeds.bin"  # no .npz suffix: must be written exactly there
    save_npz(path, arrays)
    assert path.exists() and not (tmp_path / "feeds.bin.npz").exists()
    with np.load(path) as npz:
        assert sorted(npz.files) == sorted(arrays)
        assert np.array_equal(npz["input:0"], arrays["input:0"])


def test_load_npz_validates_and_casts(tmp_path, caplog):
    """Arrays are cast to the specs' dtypes and checked against them; extras are logged."""
    specs = [TensorSpec("x", np.dtype(np.float32), ("n", 3)),
             TensorSpec("ids", np.dtype(np.int64), (2,))]
    path = tmp_path / "in.npz"
    save_npz(path, {"x": np.ones((5, 3), np.float64), "ids": np.array([1, 2], np.int32),
                    "extra": np.zeros(1)})
    with caplog.at_level(logging.WARNING):
        feeds = load_npz(path, specs)
    assert set(feeds) == {"x", "ids"}
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (5, 3)
    assert feeds["ids"].dtype == np.int64
    assert "extra" in caplog.text


def test_load_npz_errors(tmp_path):
    """Missing arrays, bad casts, bad shapes, unreadable and missing files are refused."""
    specs = [TensorSpec("x", np.dtype(np.int64), (2, 3))]
    path = tmp_path / "in.npz"
    save_npz(path, {"y": np.zeros((2, 3), np.int64)})
    with pytest.raises(InputError, match="no array for model input 'x' \\(it has: y\\)"):
        load_npz(path, specs)
    save_npz(path, {"x": np.zeros((2, 3), np.float32)})
    with pytest.raises(InputError, match="'x'.*float32.*cannot be cast to int64"):
        load_npz(path, specs)
    save_npz(path, {"x": np.zeros((2, 4), np.int64)})
    with pytest.raises(InputError, match="'x'.*gives 4 for axis 1"):
        load_npz(path, specs)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read input data"):
        load_npz(tmp_path / "junk.npz", specs)
    with pytest.raises(InputError, match="cannot read input data"):
        load_npz(tmp_path / "missing.npz", specs)


def test_save_npz_unwritable(tmp_path):
    """An unwritable .npz path is an OutputError."""
    with pytest.raises(OutputError, match="cannot write"):
        save_npz(tmp_path / "no" / "such" / "dir.npz", {"x": np.zeros(1)})
