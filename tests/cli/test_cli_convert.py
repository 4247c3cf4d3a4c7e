"""`deconv2sub convert`: success, every error path, exit codes, and nothing written on failure."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from builders import assert_equivalent, convtranspose_model, op_types

RNG = np.random.default_rng(7)


@pytest.fixture()
def model_path(tmp_path):
    """A model with symbolic N, H, W (so verification runs two trials)."""
    m = convtranspose_model(
        ["N", 3, "H", "W"],
        RNG.standard_normal((3, 2, 4, 4)).astype(np.float32),
        RNG.standard_normal(2).astype(np.float32),
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )
    p = tmp_path / "model.onnx"
    onnx.save(m, p)
    return p


def test_convert_success(invoke, model_path, tmp_path):
    """Converted, verified at two shapes, no ConvTranspose left, input untouched."""
    before = model_path.read_bytes()
    out = tmp_path / "out.onnx"
    r = invoke("convert", model_path, "-o", out)
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output and "on CPU" in r.output or "on CUDA" in r.output
    assert "trial 2" in r.output  # symbolic dims: verified at a second shape
    converted = onnx.load(out)
    assert "ConvTranspose" not in op_types(converted)
    assert model_path.read_bytes() == before


def test_convert_json(invoke, model_path, tmp_path):
    """--json -q: the report on stdout, parseable."""
    out = tmp_path / "out.onnx"
    r = invoke("convert", model_path, "-o", out, "--json", "-q")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["saved"] is True
    assert data["conversion"]["rewritten"] == 1 and data["conversion"]["skipped"] == 0
    assert data["verification"]["status"] == "PASSED"
    assert data["verification"]["device"] in ("CPU", "CUDA")
    assert len(data["verification"]["trials"]) == 2


def test_no_verify_and_input_shape(invoke, model_path, tmp_path):
    """--no-verify skips verification; --input-shape sets trial 1's shape."""
    out = tmp_path / "out.onnx"
    r = invoke("convert", model_path, "-o", out, "--no-verify")
    assert r.exit_code == 0 and "verification skipped" in r.output
    r = invoke("convert", model_path, "-o", out, "--force", "--input-shape", "X:2,3,7,9", "--json")
    data = json.loads(r.stdout)
    assert data["verification"]["trials"][0]["input_shapes"] == {"X": [2, 3, 7, 9]}


def test_refuses_overwrite_without_force(invoke, model_path, tmp_path):
    """An existing output is kept without --force, replaced with it."""
    out = tmp_path / "out.onnx"
    out.write_bytes(b"precious")
    r = invoke("convert", model_path, "-o", out)
    assert r.exit_code == 2 and "--force" in r.output
    assert out.read_bytes() == b"precious"
    r = invoke("convert", model_path, "-o", out, "--force")
    assert r.exit_code == 0, r.output
    converted = onnx.load(out)
    assert "ConvTranspose" not in op_types(converted)
    x = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
    assert_equivalent(onnx.load(model_path), converted, {"X": x})


def test_never_writes_input(invoke, model_path):
    """-o MODEL is refused even with --force."""
    before = model_path.read_bytes()
    r = invoke("convert", model_path, "-o", model_path, "--force")
    assert r.exit_code == 2 and "input" in r.output
    assert model_path.read_bytes() == before


@pytest.mark.parametrize(
    "content,label",
    [
        (None, "missing"),
        (b"", "empty"),
        (b"not an onnx model at all", "garbage"),
        ("truncated", "truncated"),
        ("dir", "directory"),
    ],
)
def test_bad_input_exit_2(invoke, tmp_path, model_path, content, label):
    """A missing, empty, garbage, truncated or directory model: one line, exit 2."""
    bad = tmp_path / "bad.onnx"
    if content == "truncated":
        data = model_path.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif content == "dir":
        bad.mkdir()
    elif content is not None:
        bad.write_bytes(content)
    out = tmp_path / "out.onnx"
    r = invoke("convert", bad, "-o", out)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("deconv2sub: error:"), r.output
    assert "Traceback" not in r.output
    assert not out.exists()


def test_invalid_model_exit_2(invoke, tmp_path):
    """A model that parses but is invalid is bad input."""
    m = convtranspose_model([1, 3, 4, 4], np.ones((3, 2, 4, 4), np.float32), None, strides=[2, 2])
    m.graph.node[0].input[0] = "missing_tensor"
    p = tmp_path / "invalid.onnx"
    onnx.save(m, p)
    r = invoke("convert", p, "-o", tmp_path / "out.onnx")
    assert r.exit_code == 2 and "not a valid ONNX model" in r.output


def test_unwritable_output(invoke, model_path, tmp_path):
    """A missing output folder or a directory as output: exit 2."""
    r = invoke("convert", model_path, "-o", tmp_path / "no_such_dir" / "out.onnx")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = invoke("convert", model_path, "-o", tmp_path)
    assert r.exit_code == 2 and "directory" in r.output


def test_bad_options_exit_2(invoke, model_path, tmp_path):
    """Bad --input-shape, --provider or --inputs: exit 2, nothing written."""
    out = tmp_path / "o.onnx"
    for args in (
        ["--input-shape", "X:1,a"],
        ["--input-shape", "nope:1,3,4,4"],
        ["--provider", "tpu"],
        ["--inputs", tmp_path / "missing.npz"],
        ["--input-shape", "X:1,3,4"],
    ):
        r = invoke("convert", model_path, "-o", out, *args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output
    assert not out.exists()


def test_require_cuda(invoke, model_path, tmp_path):
    """--require-cuda without CUDA: exit 3, nothing written."""
    from deconv2sub.runtime.ort import cuda_status

    if cuda_status()[0]:
        pytest.skip("CUDA works on this machine")
    out = tmp_path / "o.onnx"
    r = invoke("convert", model_path, "-o", out, "--require-cuda")
    assert r.exit_code == 3 and "CUDA" in r.output
    assert not out.exists()


def test_inputs_npz(invoke, model_path, tmp_path):
    """--inputs feeds the arrays of the .npz file."""
    x = RNG.standard_normal((1, 3, 5, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", X=x)
    r = invoke(
        "convert", model_path, "-o", tmp_path / "o.onnx", "--inputs", tmp_path / "in.npz", "--json"
    )
    data = json.loads(r.stdout)
    assert r.exit_code == 0 and data["verification"]["trials"][0]["input_shapes"] == {
        "X": [1, 3, 5, 6]
    }


def _convert_with_planner(model, out, planner):
    """``convert``'s job with ``planner`` passed into the pass; the VerificationError it raises."""
    from deconv2sub.errors import VerificationError
    from deconv2sub.pipeline import ConvertJob, run_convert
    from deconv2sub.rewrite.options import ConvertOptions

    with pytest.raises(VerificationError) as caught:
        run_convert(
            ConvertJob(str(model), str(out), convert_options=ConvertOptions(planner=planner))
        )
    assert caught.value.exit_code == 1  # the CLI's exit code for a mismatch
    return caught.value


def test_mismatch_exit_1_names_node_and_writes_nothing(model_path, tmp_path):
    """A planted fault in the plan (one weight off by 1%): caught, localised, nothing written."""
    from deconv2sub.plan.subpixel import make_plan

    def faulty(*args, **kwargs):
        plan = make_plan(*args, **kwargs)
        plan.weight = plan.weight.copy()
        plan.weight.flat[0] *= 1.01
        plan.weight.flat[0] += 0.05
        return plan

    out = tmp_path / "o.onnx"
    err = _convert_with_planner(model_path, out, faulty)
    data = err.result.to_dict()
    assert data["verification"]["status"] == "FAILED" and not data["saved"]
    assert [c["node"] for c in data["verification"]["culprits"]] == ["deconv"]
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_float64_is_converted_but_reported_unverified(invoke, tmp_path):
    """float64 has no ORT CPU kernel: converted, NOT VERIFIED, exit 0."""
    m = convtranspose_model([1, 2, 4, 4], np.ones((2, 2, 3, 3)), None, strides=[2, 2])
    p = tmp_path / "m64.onnx"
    onnx.save(m, p)
    out = tmp_path / "o.onnx"
    r = invoke("convert", p, "-o", out, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["verification"]["status"] == "NOT VERIFIED"
    assert "float64" in data["verification"]["unavailable"]
    assert "ConvTranspose" not in op_types(onnx.load(out))


def test_mismatch_is_localised_past_sunk_consumers(tmp_path):
    """A fault is localised past consumers sunk above the shuffle.

    With BN + Relu sunk (the default) the ConvTranspose output no longer exists in the converted
    model; the fault is still localised to the node, at the tensor where the rewrite rejoins.
    """
    from onnx import TensorProto, helper, numpy_helper

    from deconv2sub.plan.subpixel import make_plan

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 2, 4, 4)).astype(np.float32), "W")]
    inits += [
        numpy_helper.from_array(v.astype(np.float32), n)
        for n, v in [
            ("s", rng.random(2) + 0.5),
            ("b", rng.random(2)),
            ("m", rng.random(2)),
            ("v", rng.random(2) + 0.5),
        ]
    ]
    nodes = [
        helper.make_node(
            "ConvTranspose", ["X", "W"], ["t"], name="up", strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("BatchNormalization", ["t", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["Y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2, 10, 10])],
        inits,
    )
    p = tmp_path / "m.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), p
    )

    def faulty(*args, **kwargs):
        plan = make_plan(*args, **kwargs)
        plan.weight = plan.weight.copy()
        plan.weight *= 1.05
        return plan

    out = tmp_path / "o.onnx"
    data = _convert_with_planner(p, out, faulty).result.to_dict()
    culprits = data["verification"]["culprits"]
    assert culprits and culprits[0]["node"] == "up" and culprits[0]["tensor"] == "Y"
    node = data["conversion"]["nodes"][0]
    assert node["rejoin"] == "Y" and [s.split()[0] for s in node["sunk"]] == [
        "BatchNormalization",
        "Relu",
    ]
    assert not out.exists()


def test_saved_size_counts_the_external_data_file(invoke, tmp_path):
    """The "saved ... (N MB)" line counts the output's data file, not only the .onnx stub."""
    import re

    from builders import convtranspose_model

    w = (np.random.default_rng(0).standard_normal((256, 128, 16)) * 0.02).astype(np.float32)
    m = convtranspose_model([1, 256, 32], w, None, strides=[8], pads=[4, 4], ir_version=8)
    src, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(m, src)
    r = invoke("convert", src, "-o", out, "--external-data")
    assert r.exit_code == 0, r.output
    assert os.path.exists(str(out) + ".data") and os.path.getsize(out) < w.nbytes
    (mb,) = re.findall(r"saved \S+ \(([\d.]+) MB\)", r.output)
    on_disk = os.path.getsize(out) + os.path.getsize(str(out) + ".data")
    assert float(mb) == round(on_disk / 1e6, 2) and float(mb) >= w.nbytes / 1e6


def test_run_convert_reads_the_input_once(tmp_path, monkeypatch):
    """The job parses the input model once (its external data is checked from that one read)."""
    import deconv2sub.io.load as io_load
    import deconv2sub.pipeline as pipeline
    from deconv2sub import ConvertOptions
    from deconv2sub.pipeline import ConvertJob, run_convert

    model = tmp_path / "m.onnx"
    onnx.save(convtranspose_model([1, 2, 3, 3], np.ones((2, 2, 2, 2), np.float32), None,
                                  strides=[2, 2]), model)
    reads = []
    original = io_load.load_model

    def counting(path, *args, **kwargs):
        reads.append(os.fspath(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(io_load, "load_model", counting)
    monkeypatch.setattr(pipeline, "load_model", counting)
    result = run_convert(ConvertJob(str(model), str(tmp_path / "out.onnx"), verify=False,
                                    convert_options=ConvertOptions()))
    assert result.saved and reads == [str(model)]
