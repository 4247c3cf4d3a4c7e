"""Which input models `convert` accepts (issue 12).

What ONNX Runtime loads, not only what the ONNX checker passes; legacy IR version 3 models;
external data locations that are refused, with the reason.

Every converted model is checked against ONNX Runtime running the original graph.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from builders import assert_equivalent, convtranspose_model
from onnx import TensorProto, helper, numpy_helper

from deconv2sub import pipeline
from deconv2sub.errors import InputError
from deconv2sub.io.external_data import verify_external_data
from deconv2sub.io.load import load_model
from deconv2sub.io.save import save_model

RNG = np.random.default_rng(12)
F = TensorProto.FLOAT


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.fixture()
def convert(invoke):
    """``deconv2sub convert ARGS --json``: (exit code, parsed JSON or None, stderr lines)."""

    def run(*args):
        r = invoke("convert", *args, "--json")
        data = json.loads(r.stdout) if r.exit_code in (0, 1) else None
        return r.exit_code, data, [ln for ln in r.stderr.splitlines() if ln.strip()]

    return run


def checker_refuses(model: onnx.ModelProto) -> bool:
    """Whether the ONNX checker (full check) refuses ``model``."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception:  # noqa: BLE001
        return True
    return False


# ------------------------------------------------------- 1. what the checker refuses, ORT loads


def shapeless_output_model() -> onnx.ModelProto:
    """A ConvTranspose model whose graph output is declared without a shape.

    Common in hand-built and older exported models: the ONNX checker refuses it, ONNX Runtime runs
    it.
    """
    m = convtranspose_model([1, 3, 6, 6], _w(3, 2, 4, 4), _w(2), strides=[2, 2], pads=[1, 1, 1, 1])
    m.graph.output[0].CopyFrom(_vi("Y", None))
    return m


@pytest.mark.parametrize("extra", [[], ["--no-verify"]])
def test_output_without_shape_is_accepted_with_a_warning(convert, tmp_path, extra):
    """The checker refuses it, ORT runs it: converted, verified, with a warning."""
    model = shapeless_output_model()
    assert checker_refuses(model)
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(model, src)
    code, data, err = convert(src, "-o", out, *extra)
    assert code == 0, err
    assert data["saved"] and data["conversion"]["rewritten"] == 1
    warnings = data["conversion"]["warnings"]
    assert len(warnings) == 1 and "ONNX checker" in warnings[0] and "shape" in warnings[0]
    assert f"warning: {warnings[0]}" in err  # and a line of the text output
    if not extra:
        assert data["verification"]["status"] == "PASSED"
    converted = onnx.load(out)
    assert "ConvTranspose" not in [n.op_type for n in converted.graph.node]
    assert_equivalent(model, converted, {"X": _w(1, 3, 6, 6)})


def test_model_passing_the_checker_has_no_warning(convert, tmp_path):
    """A model passing the checker gets no warning."""
    model = shapeless_output_model()
    model.graph.output[0].CopyFrom(_vi("Y", [1, 2, 12, 12]))
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    code, data, err = convert(src, "-o", tmp_path / "out.onnx")
    assert code == 0 and data["conversion"]["warnings"] == [], err
    assert not any(line.startswith("warning:") for line in err)


def dangling_input_model() -> onnx.ModelProto:
    """Parses, but neither the checker nor ONNX Runtime accepts it: an input nobody makes."""
    m = convtranspose_model([1, 3, 6, 6], _w(3, 2, 4, 4), strides=[2, 2], pads=[1, 1, 1, 1])
    m.graph.node.append(helper.make_node("Add", ["Y", "nowhere"], ["Z"]))
    m.graph.output[0].CopyFrom(_vi("Z", None))
    return m


@pytest.mark.parametrize("extra", [[], ["--no-verify"], ["--runtime", "openvino"]])
def test_model_neither_checker_nor_ort_accepts_is_bad_input(convert, tmp_path, extra):
    """Neither the checker nor ORT accepts it: exit 2, nothing written."""
    if extra[-1:] == ["openvino"]:
        pytest.importorskip("openvino")
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(dangling_input_model(), src)
    code, _, err = convert(src, "-o", out, *extra)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("deconv2sub: error: the input model is not a valid ONNX model: ")
    assert "onnxruntime cannot load" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # nothing written


def test_nothing_to_rewrite_still_needs_ort_to_load(convert, tmp_path):
    """No ConvTranspose, so no verification session: ONNX Runtime is asked explicitly."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "nowhere"], ["Y"])], "g", [_vi("X", [2])], [_vi("Y", None)]
    )
    src = tmp_path / "m.onnx"
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), src
    )
    code, _, err = convert(src, "-o", tmp_path / "out.onnx")
    assert code == 2 and "onnxruntime cannot load" in err[0], err
    graph.node[0].input[1] = "X"  # now ORT loads it (the output still has no shape)
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), src
    )
    code, data, err = convert(src, "-o", tmp_path / "out.onnx")
    assert (
        code == 0
        and data["conversion"]["rewritten"] == 0
        and len(data["conversion"]["warnings"]) == 1
    )


def test_rewritten_model_must_pass_the_checker_when_the_input_did(convert, tmp_path, monkeypatch):
    """The relaxation covers the input's own defects: a rewrite the checker refuses is refused."""
    real = pipeline.checker_complaint

    def strict_on_output(path):
        return "injected complaint" if ".tmp-" in str(path) else real(path)

    monkeypatch.setattr(pipeline, "checker_complaint", strict_on_output)
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    model = shapeless_output_model()
    model.graph.output[0].CopyFrom(_vi("Y", [1, 2, 12, 12]))
    onnx.save(model, src)
    code, _, err = convert(src, "-o", out)
    assert code == 2 and err == [
        ("deconv2sub: error: the rewritten model is not a valid ONNX model: injected complaint")
    ]
    assert not out.exists()


# ------------------------------------------------------------------------ 2. IR version 3


def ir3_model(opset: int) -> onnx.ModelProto:
    """An IR-3 model as 2017-2018 exporters wrote them: every initializer also a graph input.

    ``C`` (added before the ConvTranspose) stays used after the rewrite; ``W`` and ``B`` do not.
    """
    w, b, c = _w(3, 2, 3, 3), _w(2), _w(1, 3, 1, 1)
    nodes = [
        helper.make_node("Add", ["X", "C"], ["xc"]),
        helper.make_node(
            "ConvTranspose",
            ["xc", "W", "B"],
            ["Y"],
            name="up",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        ),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in (("W", w), ("B", b), ("C", c))]
    inputs = [_vi("X", [1, 3, 5, 5])] + [_vi(t.name, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "g", inputs, [_vi("Y", [1, 2, 10, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=3)
    onnx.checker.check_model(model, full_check=True)
    return model


def assert_ir3_valid(model: onnx.ModelProto) -> None:
    """Valid for IR 3: the checker passes and every initializer is a graph input."""
    assert model.ir_version == 3
    onnx.checker.check_model(model, full_check=True)
    inputs = [vi.name for vi in model.graph.input]
    assert all(t.name in inputs for t in model.graph.initializer)


@pytest.mark.parametrize("opset", [7, 8])
def test_ir3_model_converts_and_stays_valid(convert, tmp_path, opset):
    """An IR-3 model comes out valid for IR 3 and equivalent under ORT."""
    model = ir3_model(opset)
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(model, src)
    code, data, err = convert(src, "-o", out)
    assert code == 0, err
    assert data["conversion"]["rewritten"] == 1 and data["verification"]["status"] == "PASSED"
    assert data["conversion"]["warnings"] == []
    converted = onnx.load(out)
    assert_ir3_valid(converted)
    assert [o.version for o in converted.opset_import] == [opset]
    inputs = {vi.name for vi in converted.graph.input}
    inits = {t.name for t in converted.graph.initializer}
    assert "C" in inputs and "C" in inits  # still used: in both lists
    assert not {"W", "B"} & (inputs | inits)  # no longer used: in neither
    assert_equivalent(model, converted, {"X": _w(1, 3, 5, 5)})


@pytest.mark.parametrize("shared", [False, True])
def test_ir3_subgraph_initializers_move_to_the_main_graph(convert, tmp_path, shared):
    """IR 3: an If branch's rewritten weights become main-graph initializers (and inputs).

    An If branch can take no inputs. ``shared``: ``Z`` is read by both branches; the export copies
    it into each, and the copies must become one initializer again.
    """
    then_nodes = [
        helper.make_node(
            "ConvTranspose",
            ["X", "W"],
            ["t0" if shared else "yt"],
            name="up",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        )
    ]
    if shared:
        then_nodes.append(helper.make_node("Max", ["t0", "Z"], ["yt"]))
    then_g = helper.make_graph(then_nodes, "then", [], [_vi("yt", [1, 2, 10, 10])])
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["Z"], ["ye"])], "else", [], [_vi("ye", [1, 2, 10, 10])]
    )
    inits = [
        numpy_helper.from_array(_w(3, 2, 4, 4), "W"),
        numpy_helper.from_array(_w(1, 2, 10, 10), "Z"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node(
                "If", ["cond"], ["Y"], then_branch=then_g, else_branch=else_g, name="if"
            )
        ],
        "g",
        [_vi("X", [1, 3, 5, 5]), _vi("cond", [], TensorProto.BOOL)]
        + [_vi(t.name, list(t.dims)) for t in inits],
        [_vi("Y", [1, 2, 10, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    onnx.checker.check_model(model, full_check=True)
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(model, src)
    code, data, err = convert(src, "-o", out)
    assert code == 0, err
    assert data["conversion"]["rewritten"] == 1 and data["verification"]["status"] == "PASSED"
    converted = onnx.load(out)
    assert_ir3_valid(converted)
    for attr in converted.graph.node[0].attribute:
        assert not attr.g.initializer
    assert [t.name for t in converted.graph.initializer].count("Z") == 1
    x = _w(1, 3, 5, 5)
    for cond in (True, False):
        assert_equivalent(model, converted, {"X": x, "cond": np.array(cond)})


# ------------------------------------------------------- 14. external data locations not read


def external_model(tmp_path, location):
    """A model in tmp_path/model/ whose weight's external data location is ``location``.

    The data file itself exists at tmp_path/w.data.
    """
    folder = tmp_path / "model"
    folder.mkdir()
    model = convtranspose_model([1, 3, 5, 5], _w(3, 2, 16, 16), strides=[2, 2], pads=[1, 1, 1, 1])
    save_model(model, folder / "m.onnx", external_data=True)
    (folder / "m.onnx.data").rename(tmp_path / "w.data")
    stub = onnx.load(folder / "m.onnx", load_external_data=False)
    entry = next(e for e in stub.graph.initializer[0].external_data if e.key == "location")
    entry.value = location(tmp_path) if callable(location) else location
    onnx.save(stub, folder / "m.onnx")
    return folder / "m.onnx"


@pytest.mark.parametrize("case", ["absolute", "parent", "symlink"])
def test_external_data_outside_the_folder_is_refused_saying_why(convert, tmp_path, case):
    """External data outside the model's folder is refused, saying why."""
    if case == "absolute":
        path = external_model(tmp_path, lambda d: str(d / "w.data"))
        why = ["absolute path", "outside the model's folder"]
    elif case == "parent":
        path = external_model(tmp_path, "../w.data")
        why = ["'../w.data'", "outside the model's folder"]
    else:
        path = external_model(tmp_path, "w.data")
        (path.parent / "w.data").symlink_to(tmp_path / "w.data")
        why = ["symbolic link"]
    assert (tmp_path / "w.data").is_file()
    stub = load_model(path, load_external_data=False)
    for attempt in (lambda: load_model(path), lambda: verify_external_data(stub, path)):
        with pytest.raises(InputError) as ei:
            attempt()
        msg = str(ei.value)
        assert "missing" not in msg and "'W'" in msg and all(w in msg for w in why), msg
    code, _, err = convert(path, "-o", tmp_path / "out.onnx")
    assert code == 2 and len(err) == 1 and all(w in err[0] for w in why), err
    assert not (tmp_path / "out.onnx").exists()
