"""Trial input shapes for symbolic dims and the user's --input-shape (issue 12, point 9).

The original may tie the sizes of different inputs (a skip connection): verification finds sizes
it accepts, or says which symbolic dims to give with --input-shape; ONNX Runtime's own log lines
never reach the terminal. A given shape is one trial, and verification runs at another size too.
(Point 10, --input-shape reaching the emission decisions: tests/targets/test_shape_decisions.py.)
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from deconv2sub.cli import main
from deconv2sub.verify.inputs import model_input_specs, trial_shape_candidates
from deconv2sub.verify.options import VerifyOptions
from deconv2sub.verify.trials import plan_trials

#: How ONNX Runtime's default log sink starts a line: "[E:onnxruntime:, sequential_executor.cc:..."
ORT_LOG = re.compile(r"\[[VIWEF]:onnxruntime:")


def invoke(*args):
    """Run the CLI with ``args``."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _offset_model() -> onnx.ModelProto:
    """Inputs a (N,2,T) and b (N,2,U) that only run together when U = T + 1.

    a is padded by one and added to b, then a ConvTranspose: no per-input scaling of the trial
    sizes satisfies that.
    """
    rng = np.random.default_rng(12)
    w = numpy_helper.from_array(rng.standard_normal((2, 3, 4)).astype(np.float32), "W")
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
    """Input x (N,4,H,W) upsampled by a k2 s2 ConvTranspose, concatenated with skip (N,2,H2,W2).

    Runs only when H2 = 2H and W2 = 2W, which the dim names do not say.
    """
    rng = np.random.default_rng(13)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), "W")
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
    """Two trials at sizes the original accepts: the skip input twice the upsampled one."""
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
    """The plain trial comes first; a later candidate scales one input against the other."""
    specs = model_input_specs(_skip_model())
    candidates = trial_shape_candidates(specs, {})
    assert candidates[0] == {"x": (1, 4, 16, 16), "skip": (1, 2, 16, 16)}  # the plain trial first
    assert any(c["skip"][2:] == tuple(2 * v for v in c["x"][2:]) for c in candidates)


def test_original_failing_at_every_trial_size_names_the_dims(tmp_path, capfd):
    """One line naming the symbolic dims and the --input-shape options; nothing written."""
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
    """The validate command reports the shape failure without ONNX Runtime's log lines."""
    path = tmp_path / "offset.onnx"
    onnx.save(_offset_model(), path)
    r = invoke("validate", path, path)
    assert r.exit_code == 2 and "symbolic dims" in r.output
    captured = capfd.readouterr()
    assert not ORT_LOG.search(captured.out + captured.err + r.output)


def test_given_shapes_that_admit_no_other_size_verify_once_with_a_note(tmp_path):
    """Given shapes no other size satisfies: one trial, and a note that the second was skipped."""
    path = tmp_path / "offset.onnx"
    onnx.save(_offset_model(), path)
    r = invoke("convert", path, "-o", tmp_path / "out.onnx", "--json", "-q",
               "--input-shape", "a:1,2,16", "--input-shape", "b:1,2,17")
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["verification"]
    assert v["status"] == "PASSED" and len(v["trials"]) == 1
    assert len(v["notes"]) == 1 and v["notes"][0].startswith("trial 2 skipped")


def test_given_shape_is_one_trial_and_another_size_the_second():
    """A given shape is trial 1; trial 2 takes another size, keeping the tie between inputs."""
    specs = model_input_specs(_skip_model())
    given = {"x": (1, 4, 8, 8), "skip": (1, 2, 16, 16)}
    trials = plan_trials(specs, VerifyOptions(input_shapes=given))
    assert trials[0] == {"x": (1, 4, 8, 8), "skip": (1, 2, 16, 16)}
    assert len(trials) == 2 and trials[1]["x"][2:] != (8, 8)
    assert trials[1]["skip"][2:] == tuple(2 * v for v in trials[1]["x"][2:])  # the tie kept
