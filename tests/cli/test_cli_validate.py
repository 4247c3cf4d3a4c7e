"""`deconv2sub validate`: any two models, per-output statistics, faults localised, exit codes."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from surface_builders import (
    converted,
    perturb_conv_weight,
    rename_output,
    save,
    two_deconv_model,
)


@pytest.fixture()
def invoke_json(invoke):
    """``invoke`` with ``--json -q``: (result, parsed JSON)."""

    def run(*args):
        r = invoke(*args, "--json", "-q")
        return r, json.loads(r.stdout)

    return run


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The original, its conversion, faults planted in each Conv, a renamed output."""
    d = tmp_path_factory.mktemp("validate")
    original = two_deconv_model()
    good = converted(original)
    return {
        "original": save(original, d / "original.onnx"),
        "good": save(good, d / "good.onnx"),
        "bad_up2": save(perturb_conv_weight(good, "up2/subpixel_conv"), d / "bad_up2.onnx"),
        "bad_up1": save(
            perturb_conv_weight(good, "up1/subpixel_conv", element=None), d / "bad_up1.onnx"
        ),
        "renamed": save(rename_output(good, "out", "out_renamed"), d / "renamed.onnx"),
        "dir": d,
    }


def test_pass(invoke, models):
    """A good conversion passes with per-output statistics and one verdict."""
    r = invoke("validate", models["original"], models["good"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[-1].startswith("PASSED: all 1 output(s) match")
    assert sum(ln.startswith(("PASSED", "FAILED")) for ln in lines) == 1  # one overall verdict
    assert "on CPU" in r.output or "on CUDA" in r.output
    assert "graph optimisations off" in r.output
    assert "worst at [" in r.output  # the worst element, even for a passing output
    assert "req atol" in r.output and "max rel" in r.output and "mean abs" in r.output


@pytest.mark.parametrize("which,node,tensor", [("bad_up2", "up2", "y2"), ("bad_up1", "up1", "y1")])
def test_planted_fault_fails_and_is_localised(invoke, models, which, node, tensor):
    """One weight of one rewritten Conv scaled by 1%: fails, naming the output and the node."""
    r = invoke("validate", models["original"], models[which])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    out_row = next(ln for ln in r.output.splitlines() if ln.startswith("out "))
    assert out_row.endswith("FAIL")
    assert f"first divergence: tensor '{tensor}'" in r.output
    assert f"produced in ORIGINAL by node '{node}' (ConvTranspose)" in r.output
    assert f"produced in CANDIDATE by node '{node}/subpixel_" in r.output
    last = r.output.splitlines()[-1]
    assert last.startswith("FAILED: 1 of 1 output(s) differ ('out')") and f"'{tensor}'" in last


def test_planted_fault_json(invoke_json, models):
    """The JSON report of a planted fault names the output and the first divergence."""
    r, data = invoke_json("validate", models["original"], models["bad_up2"])
    assert r.exit_code == 1
    assert data["status"] == "FAILED" and data["failing_outputs"] == ["out"]
    out = data["trials"][0]["outputs"][0]
    assert out["name"] == "out" and out["passed"] is False
    assert out["required_atol"] > out["atol"] and len(out["worst_index"]) == 4
    first = data["localisation"]["first_divergence"]
    assert first["tensor"] == "y2"
    assert first["original_node"] == {"name": "up2", "op": "ConvTranspose"}
    assert first["candidate_node"]["name"].startswith("up2/subpixel_")
    assert data["localisation"]["exact"] is True
    # The upstream tensor y1 matched: only y2 and what follows it diverge.
    assert data["localisation"]["diverging"] >= 1


def test_unpaired_outputs_listed_not_paired_by_position(invoke, invoke_json, models):
    """Outputs are paired by name; unpaired ones are listed and fail."""
    r = invoke("validate", models["original"], models["renamed"])
    assert r.exit_code == 1, r.output
    assert "out: missing from the candidate" in r.output
    assert "out_renamed: not produced by the reference" in r.output
    r, data = invoke_json("validate", models["original"], models["renamed"])
    t = data["trials"][0]
    assert (
        t["outputs"] == []
        and t["unpaired_ref"] == ["out"]
        and t["unpaired_cand"] == ["out_renamed"]
    )


def _single_error_line(r):
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("deconv2sub: error:"), r.output
    assert "Traceback" not in r.output
    return lines[0]


def test_bad_files_exit_2(invoke, models, tmp_path):
    """Missing, garbage, truncated or directory models: one line, exit 2."""
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"definitely not a model")
    truncated = tmp_path / "truncated.onnx"
    data = open(models["good"], "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    for a, b in [
        (models["original"], tmp_path / "missing.onnx"),
        (tmp_path / "missing.onnx", models["good"]),
        (models["original"], garbage),
        (models["original"], truncated),
        (models["original"], tmp_path),
    ]:
        r = invoke("validate", a, b)
        assert r.exit_code == 2, (a, b, r.output)
        _single_error_line(r)


def test_incompatible_inputs_exit_2(invoke, models, tmp_path):
    """Inputs that differ in name, shape or dtype: exit 2, saying which."""
    other_name = onnx.load(models["good"])
    other_name.graph.input[0].name = "y"
    for n in other_name.graph.node:
        n.input[:] = ["y" if i == "x" else i for i in n.input]
    other_dims = two_deconv_model(shape=(1, 8, 6, 6))
    other_dtype = onnx.load(models["good"])
    other_dtype.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    for model, words in [
        (other_name, "lacks 'x'"),
        (other_dims, "shape"),
        (other_dtype, "float64"),
    ]:
        p = save(model, tmp_path / "other.onnx")
        r = invoke("validate", models["original"], p)
        assert r.exit_code == 2, r.output
        line = _single_error_line(r)
        assert "incompatible inputs" in line and words in line


def test_bad_options_exit_2(invoke, models, tmp_path):
    """Bad --input-shape, --inputs, --save-inputs or --provider: exit 2."""
    for args in (
        ["--input-shape", "x:1,a"],
        ["--input-shape", "nope:1,8,5,5"],
        ["--inputs", tmp_path / "no.npz"],
        ["--save-inputs", tmp_path / "no_dir" / "in.npz"],
        ["--provider", "tpu"],
    ):
        r = invoke("validate", models["original"], models["good"], *args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def test_save_inputs_and_outputs_reproduce_the_failure(invoke, invoke_json, models, tmp_path):
    """--save-inputs/--save-outputs keep a failure; --inputs replays it exactly."""
    inputs, outputs = tmp_path / "in.npz", tmp_path / "out.npz"
    r = invoke(
        "validate",
        models["original"],
        models["bad_up2"],
        "--seed",
        "7",
        "--save-inputs",
        inputs,
        "--save-outputs",
        outputs,
    )
    assert r.exit_code == 1 and f"--inputs {inputs}" in r.output
    with np.load(inputs) as z:
        assert sorted(z.files) == ["x"] and z["x"].shape == (1, 8, 5, 5)
    with np.load(outputs) as z:
        assert sorted(z.files) == ["candidate/out", "original/out"]
        assert not np.allclose(z["candidate/out"], z["original/out"], rtol=1e-4, atol=1e-5)
    _, first = invoke_json("validate", models["original"], models["bad_up2"], "--seed", "7")
    r, again = invoke_json("validate", models["original"], models["bad_up2"], "--inputs", inputs)
    assert r.exit_code == 1
    a, b = first["trials"][0]["outputs"][0], again["trials"][0]["outputs"][0]
    assert a["max_abs_err"] == b["max_abs_err"] and a["worst_index"] == b["worst_index"]
    assert again["trials"][0]["seed"] is None  # from the file


def test_trials_and_seeds(invoke_json, models):
    """--trials N runs seeds seed..seed+N-1."""
    r, data = invoke_json(
        "validate", models["original"], models["good"], "--trials", "3", "--seed", "5"
    )
    assert r.exit_code == 0
    assert [t["seed"] for t in data["trials"]] == [
        5,
        6,
        7,
    ]  # fixed shapes: same size, different data


def test_symbolic_dims_two_trials_and_input_shape(invoke_json, tmp_path):
    """Symbolic dims: two trials at different shapes; --input-shape and --val-range apply."""
    original = two_deconv_model(shape=("N", 8, "H", "W"))
    a, b = save(original, tmp_path / "a.onnx"), save(converted(original), tmp_path / "b.onnx")
    r, data = invoke_json("validate", a, b)
    assert r.exit_code == 0 and len(data["trials"]) == 2
    assert data["trials"][0]["input_shapes"] != data["trials"][1]["input_shapes"]
    r, data = invoke_json("validate", a, b, "--input-shape", "x:2,8,7,3", "--val-range", "-1", "1")
    assert data["trials"][0]["input_shapes"] == {"x": [2, 8, 7, 3]}


def test_tolerance_options(invoke, models):
    """--atol/--rtol decide the verdict and are printed."""
    r = invoke("validate", models["original"], models["bad_up2"], "--atol", "1", "--rtol", "0")
    assert r.exit_code == 0, r.output
    assert "rtol=0 atol=1" in r.output


def test_ort_opt(invoke_json, models):
    """--ort-opt turns graph optimisations on."""
    r, data = invoke_json("validate", models["original"], models["good"], "--ort-opt")
    assert r.exit_code == 0 and data["graph_optimizations"] is True


def test_candidate_that_fails_to_run_is_a_failure(invoke, tmp_path):
    """A candidate that loads but fails at run time fails validation (exit 1), not "bad input".

    A Reshape to an impossible size, with symbolic dims so that ONNX Runtime cannot tell at load
    time.
    """
    original = two_deconv_model(shape=("N", 8, "H", "W"))
    model = converted(original)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    model.graph.initializer.append(helper.make_tensor("seven", TensorProto.INT64, [1], [7]))
    at = list(model.graph.node).index(relu)
    model.graph.node.insert(
        at, helper.make_node("Reshape", ["bad", "y1_shape"], ["y1_back"], name="back")
    )
    model.graph.node.insert(at, helper.make_node("Reshape", ["y1", "seven"], ["bad"], name="oops"))
    model.graph.node.insert(at, helper.make_node("Shape", ["y1"], ["y1_shape"], name="shape_of_y1"))
    relu.input[0] = "y1_back"
    a, b = save(original, tmp_path / "a.onnx"), save(model, tmp_path / "runfail.onnx")
    outputs = tmp_path / "outputs.npz"
    r = invoke("validate", a, b, "--save-outputs", outputs, "--save-inputs", tmp_path / "in.npz")
    assert r.exit_code == 1, r.output
    assert r.output.splitlines()[-1].startswith(
        "FAILED: onnxruntime failed to run the candidate model"
    )
    with np.load(outputs) as z:  # what the original produced is still kept for reproduction
        assert z.files == ["original/out"]


def test_openvino_runtime(invoke, models):
    """--runtime openvino validates and localises on OpenVINO."""
    pytest.importorskip("openvino")
    r = invoke("validate", models["original"], models["good"], "--runtime", "openvino")
    assert r.exit_code == 0, r.output
    assert "openvino" in r.output and "on CPU" in r.output
    r = invoke("validate", models["original"], models["bad_up2"], "--runtime", "openvino")
    assert r.exit_code == 1 and "first divergence: tensor 'y2'" in r.output


def test_openvino_missing_gives_clear_message(invoke, models, monkeypatch):
    """Without openvino: exit 3 with the install command."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    r = invoke("validate", models["original"], models["good"], "--runtime", "openvino")
    assert r.exit_code == 3
    line = _single_error_line(r)
    assert "pip install 'deconv2sub[openvino]'" in line


def test_output_fits_80_columns(invoke, models):
    """The text report fits 80 columns."""
    r = invoke("validate", models["original"], models["bad_up2"])
    long = [ln for ln in r.output.splitlines() if len(ln) > 80 and str(models["dir"]) not in ln]
    assert not long, long


def test_help_has_example(invoke):
    """Validate --help shows examples."""
    r = invoke("validate", "--help")
    assert r.exit_code == 0 and "Example:" in r.output and "deconv2sub validate" in r.output


def test_openvino_float64_is_held_to_float32_tolerances(invoke, tmp_path):
    """OpenVINO's CPU plugin computes float64 in float32; a float64 model must not fail for that."""
    pytest.importorskip("openvino")
    from builders import convtranspose_model

    original = convtranspose_model(
        [1, 2, 4, 4], np.random.default_rng(0).standard_normal((2, 2, 3, 3)), None, strides=[2, 2]
    )
    a, b = save(original, tmp_path / "a.onnx"), save(converted(original), tmp_path / "b.onnx")
    r = invoke("validate", a, b, "--runtime", "openvino")
    assert r.exit_code == 0, r.output
    assert "OpenVINO computes float64 in float32" in r.output
    r = invoke(
        "validate", a, b
    )  # ONNX Runtime CPU has no float64 ConvTranspose: cannot validate there
    assert r.exit_code == 3 and "float64" in r.output
