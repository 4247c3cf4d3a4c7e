"""Trial input shapes for symbolic dims and the user's --input-shape (issue 12, points 9 and 10).

* The original may tie the sizes of different inputs (a skip connection): verification finds sizes
  it accepts, or says which symbolic dims to give with --input-shape; ONNX Runtime's own log lines
  never reach the terminal.
* --input-shape reaches the decisions that stay exact at every size (``auto``'s measurements,
  MACs), never one that bakes a size the model leaves symbolic, and verification runs at the given
  shape and at another one.
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import deconv2sub
from deconv2sub import autotune
from deconv2sub.cli import main
from deconv2sub.inputs import model_input_specs
from deconv2sub.verify import VerifyOptions, plan_trials

from builders import convtranspose_model, data_op_types, run

#: How ONNX Runtime's default log sink starts a line: "[E:onnxruntime:, sequential_executor.cc:..."
ORT_LOG = re.compile(r"\[[VIWEF]:onnxruntime:")
RNG = np.random.default_rng(12)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _offset_model() -> onnx.ModelProto:
    """Inputs a (N,2,T) and b (N,2,U) that only run together when U = T + 1 (a is padded by one and
    added to b), then a ConvTranspose: no per-input scaling of the trial sizes satisfies that."""
    w = numpy_helper.from_array(RNG.standard_normal((2, 3, 4)).astype(np.float32), "W")
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 1], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["a", "pads"], ["pa"], name="pad"),
             helper.make_node("Add", ["pa", "b"], ["s"], name="add"),
             helper.make_node("ConvTranspose", ["s", "W"], ["y"], name="up", strides=[2],
                              pads=[1, 1])]
    graph = helper.make_graph(
        nodes, "offset",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2, "T"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2, "U"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "Y"])], [w, pads])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _skip_model() -> onnx.ModelProto:
    """x (N,4,H,W) upsampled by a k2 s2 ConvTranspose, concatenated with skip (N,2,H2,W2): runs only
    when H2 = 2H and W2 = 2W, which the dim names do not say."""
    w = numpy_helper.from_array(RNG.standard_normal((4, 3, 2, 2)).astype(np.float32), "W")
    nodes = [helper.make_node("ConvTranspose", ["x", "W"], ["u"], name="up", strides=[2, 2]),
             helper.make_node("Concat", ["skip", "u"], ["y"], name="cat", axis=1)]
    graph = helper.make_graph(
        nodes, "skip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "H", "W"]),
         helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["N", 2, "H2", "W2"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, "H2", "W2"])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


# ---- point 9: tied input sizes ----------------------------------------------------------------
def test_tied_inputs_find_sizes_the_original_accepts(tmp_path):
    path = tmp_path / "skip.onnx"
    onnx.save(_skip_model(), path)
    r = invoke("convert", path, "-o", tmp_path / "out.onnx", "--json", "-q")
    assert r.exit_code == 0, r.output
    trials = json.loads(r.stdout)["verification"]["trials"]
    assert len(trials) == 2
    for t in trials:
        x, skip = t["input_shapes"]["x"], t["input_shapes"]["skip"]
        assert skip[2:] == [2 * v for v in x[2:]] and t["passed"]
    assert trials[0]["input_shapes"] != trials[1]["input_shapes"]


def test_trial_candidates_scale_inputs_apart():
    from deconv2sub.inputs import trial_shape_candidates

    specs = model_input_specs(_skip_model())
    candidates = trial_shape_candidates(specs, {})
    assert candidates[0] == {"x": (1, 4, 16, 16), "skip": (1, 2, 16, 16)}  # the plain trial first
    assert any(c["skip"][2:] == tuple(2 * v for v in c["x"][2:]) for c in candidates)


def test_original_failing_at_every_trial_size_names_the_dims(tmp_path, capfd):
    path = tmp_path / "offset.onnx"
    onnx.save(_offset_model(), path)
    out = tmp_path / "out.onnx"
    r = invoke("convert", path, "-o", out)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert "symbolic dims N=1, T=16, U=16" in lines[0]
    assert "--input-shape a:1,2,16 --input-shape b:1,2,16" in lines[0]
    assert not out.exists()
    captured = capfd.readouterr()
    assert not ORT_LOG.search(captured.out + captured.err + r.output)


def test_validate_never_leaks_ort_log_lines(tmp_path, capfd):
    path = tmp_path / "offset.onnx"
    onnx.save(_offset_model(), path)
    r = invoke("validate", path, path)
    assert r.exit_code == 2 and "symbolic dims" in r.output
    captured = capfd.readouterr()
    assert not ORT_LOG.search(captured.out + captured.err + r.output)


def test_given_shapes_that_admit_no_other_size_verify_once_with_a_note(tmp_path):
    path = tmp_path / "offset.onnx"
    onnx.save(_offset_model(), path)
    r = invoke("convert", path, "-o", tmp_path / "out.onnx", "--json", "-q",
               "--input-shape", "a:1,2,16", "--input-shape", "b:1,2,17")
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["verification"]
    assert v["status"] == "PASSED" and len(v["trials"]) == 1
    assert len(v["notes"]) == 1 and v["notes"][0].startswith("trial 2 skipped")


# ---- point 10: --input-shape reaches the decisions --------------------------------------------
def _symbolic_path(tmp_path):
    w = RNG.standard_normal((8, 4, 2, 2)).astype(np.float32)
    m = convtranspose_model(["N", 8, "H", "W"], w, strides=[2, 2])
    path = tmp_path / "sym.onnx"
    onnx.save(m, path)
    return m, path


def test_given_shape_is_one_trial_and_another_size_the_second():
    specs = model_input_specs(_skip_model())
    given = {"x": (1, 4, 8, 8), "skip": (1, 2, 16, 16)}
    trials = plan_trials(specs, VerifyOptions(input_shapes=given))
    assert trials[0] == {"x": (1, 4, 8, 8), "skip": (1, 2, 16, 16)}
    assert len(trials) == 2 and trials[1]["x"][2:] != (8, 8)
    assert trials[1]["skip"][2:] == tuple(2 * v for v in trials[1]["x"][2:])  # the tie kept


def test_auto_measures_at_the_given_shape_and_stays_dynamic(tmp_path, monkeypatch):
    monkeypatch.setenv("DECONV2SUB_CACHE_DIR", "")
    autotune.clear_cache()
    original, path = _symbolic_path(tmp_path)
    out = tmp_path / "out.onnx"
    r = invoke("convert", path, "-o", out, "--strategy", "auto", "--input-shape", "X:1,8,24,24",
               "--json", "-q")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (node,) = data["conversion"]["nodes"]
    assert node["strategy_reason"].startswith("auto: fastest measured"), node["strategy_reason"]
    # at symbolic sizes transpose_gather emits two_stage's graph: measured once, under that name
    measured = node["strategy_reason"]
    assert "two_stage" in measured and "transpose_gather" not in measured
    shapes = [t["input_shapes"]["X"] for t in data["verification"]["trials"]]
    assert shapes[0] == [1, 8, 24, 24] and len(shapes) == 2 and shapes[1] != shapes[0]
    converted = onnx.load(out)
    assert not {"Gather", "Gemm"} & set(data_op_types(converted))  # nothing baked for 24x24
    feeds = {"X": RNG.standard_normal((3, 8, 5, 7)).astype(np.float32)}
    np.testing.assert_allclose(run(converted, feeds)[0], run(original, feeds)[0],
                               rtol=1e-5, atol=1e-5)


def test_inspect_auto_uses_the_given_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("DECONV2SUB_CACHE_DIR", "")
    autotune.clear_cache()
    _, path = _symbolic_path(tmp_path)
    r = invoke("inspect", path, "--strategy", "auto", "--input-shape", "X:1,8,24,24", "--json",
               "-q")
    assert r.exit_code == 0, r.output
    (node,) = json.loads(r.stdout)["nodes"]
    assert node["why"].startswith("auto: fastest measured"), node["why"]
    assert node["macs_before"] == 8 * 4 * 4 * 24 * 24


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_given_shape_never_bakes_sizes_into_default(target):
    """Batch 1 and a 1x1 k2 s2 take the Gemm + row Gather at known sizes: not for symbolic H/W."""
    w = RNG.standard_normal((8, 4, 2, 2)).astype(np.float32)
    m = convtranspose_model([1, 8, "H", "W"], w, strides=[2, 2])
    options = deconv2sub.ConvertOptions(target=target, input_shapes={"X": (1, 8, 32, 32)})
    converted, report = deconv2sub.convert_model(m, options)
    assert not {"Gather", "Gemm"} & set(data_op_types(converted))
    for shape in [(1, 8, 32, 32), (1, 8, 5, 9)]:
        feeds = {"X": RNG.standard_normal(shape).astype(np.float32)}
        np.testing.assert_allclose(run(converted, feeds)[0], run(m, feeds)[0], rtol=1e-5, atol=1e-5)
