"""ConvTranspose inside If / Loop / Scan bodies and model-local functions, checked against ORT."""

from __future__ import annotations

import collections
import sys

import numpy as np
import onnx
import pytest
from builders import run
from onnx import TensorProto, helper, numpy_helper

import deconv2sub

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(5))


F = TensorProto.FLOAT


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _vi(name, shape=("a", "b", "c", "d"), elem=F):
    return helper.make_tensor_value_info(name, elem, list(shape) if shape is not None else None)


def _model(nodes, inputs, outputs, inits=None, functions=(), opsets=(("", 17),)):
    graph = helper.make_graph(nodes, "main", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()])
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
        ir_version=8,
        functions=list(functions),
    )


def _all_names(graph: onnx.GraphProto, names=None):
    names = names if names is not None else collections.Counter()
    for n in graph.node:
        if n.name:
            names["node:" + n.name] += 1
        for o in n.output:
            names["tensor:" + o] += 1
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _all_names(a.g, names)
            for g in a.graphs:
                _all_names(g, names)
    return names


def _check(model, converted, feeds_list, tol=2e-5):
    onnx.checker.check_model(converted, full_check=True)
    for feeds in feeds_list:
        for r, g in zip(run(model, feeds), run(converted, feeds)):
            assert r.shape == g.shape
            np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


def _walk_ops(graph):
    for n in graph.node:
        yield n.op_type
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _walk_ops(a.g)
            for g in a.graphs:
                yield from _walk_ops(g)


def test_if_both_branches_same_node_names():
    """Both branches hold a node called 'up'.

    One with an outer-scope weight, one with a branch-local one.
    """
    w_outer, w_inner = _x(3, 2, 4, 4), _x(3, 2, 3, 3)
    then_g = helper.make_graph(
        [
            helper.make_node(
                "ConvTranspose",
                ["X", "W"],
                ["y_then"],
                name="up",
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            )
        ],
        "then",
        [],
        [_vi("y_then")],
    )
    else_g = helper.make_graph(
        [
            helper.make_node(
                "ConvTranspose",
                ["X", "Wi"],
                ["y_else"],
                name="up",
                strides=[2, 2],
                pads=[1, 1, 0, 0],
                output_padding=[1, 1],
            )
        ],
        "else",
        [],
        [_vi("y_else")],
        [numpy_helper.from_array(w_inner, "Wi")],
    )
    nodes = [
        helper.make_node("If", ["cond"], ["Y"], then_branch=then_g, else_branch=else_g, name="if")
    ]
    m = _model(
        nodes,
        [_vi("X", (1, 3, 5, 5)), _vi("cond", (), TensorProto.BOOL)],
        [_vi("Y")],
        {"W": w_outer},
    )
    converted, report = deconv2sub.convert_model(m)
    assert len(report.rewritten) == 2 and sorted(n.graph for n in report.nodes) == [
        "main/if.else_branch",
        "main/if.then_branch",
    ]
    assert "ConvTranspose" not in set(_walk_ops(converted.graph))
    dup = [k for k, v in _all_names(converted.graph).items() if v > 1 and k.startswith("tensor:")]
    assert not dup, dup
    node_names = [k for k in _all_names(converted.graph) if k.startswith("node:up")]
    assert len(node_names) == len(set(node_names))
    _check(m, converted, [{"X": _x(1, 3, 5, 5), "cond": np.array(c)} for c in (True, False)])


def test_loop_body_carried_and_scan_output():
    """Loop body: a stride-1 ConvTranspose on the carried state, a stride-2 one as scan output."""
    w_keep, w_up = _x(3, 3, 3, 3) * 0.3, _x(3, 2, 4, 4)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node(
                "ConvTranspose", ["v_in", "Wk"], ["v_out"], name="smooth", pads=[1, 1, 1, 1]
            ),
            helper.make_node(
                "ConvTranspose",
                ["v_in", "Wu"],
                ["up_out"],
                name="up",
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            ),
        ],
        "body",
        [
            _vi("i", (), TensorProto.INT64),
            _vi("cond_in", (), TensorProto.BOOL),
            _vi("v_in", (1, 3, 5, 5)),
        ],
        [
            _vi("cond_out", (), TensorProto.BOOL),
            _vi("v_out", (1, 3, 5, 5)),
            _vi("up_out", (1, 2, 10, 10)),
        ],
    )
    nodes = [
        helper.make_node("Loop", ["trip", "", "X"], ["v_final", "ups"], body=body, name="loop")
    ]
    m = _model(nodes, [_vi("X", (1, 3, 5, 5))], [_vi("v_final"), _vi("ups", (3, 1, 2, 10, 10))],
               {"Wk": w_keep, "Wu": w_up, "trip": np.array(3, np.int64)})
    converted, report = deconv2sub.convert_model(m)
    assert len(report.rewritten) == 2, [n.reason for n in report.skipped]
    assert {n.graph for n in report.nodes} == {"main/loop.body"}
    _check(m, converted, [{"X": _x(1, 3, 5, 5)}], tol=1e-4)


def test_scan_body():
    """A ConvTranspose in a Scan body is rewritten; equal to ORT."""
    w = _x(3, 2, 3, 3)
    body = helper.make_graph(
        [
            helper.make_node(
                "ConvTranspose",
                ["frame", "W"],
                ["up"],
                name="up",
                strides=[2, 2],
                output_padding=[1, 1],
            ),
            helper.make_node("Identity", ["state_in"], ["state_out"]),
        ],
        "scan_body",
        [_vi("state_in", (1,)), _vi("frame", (1, 3, 4, 4))],
        [_vi("state_out", (1,)), _vi("up", (1, 2, 10, 10))],
    )
    nodes = [
        helper.make_node(
            "Scan", ["s0", "X"], ["s_final", "Y"], body=body, num_scan_inputs=1, name="scan"
        )
    ]
    m = _model(
        nodes,
        [_vi("s0", (1,)), _vi("X", ("T", 1, 3, 4, 4))],
        [_vi("s_final", (1,)), _vi("Y", ("T", 1, 2, 10, 10))],
        {"W": w},
    )
    converted, report = deconv2sub.convert_model(m)
    assert len(report.rewritten) == 1 and report.nodes[0].graph == "main/scan.body"
    _check(m, converted, [{"s0": _x(1), "X": _x(t, 1, 3, 4, 4)} for t in (2, 5)])


def test_if_inside_loop_body():
    """ConvTransposes in an If inside a Loop body are rewritten; equal to ORT."""
    w = _x(3, 2, 4, 4)
    then_g = helper.make_graph(
        [
            helper.make_node(
                "ConvTranspose", ["v_in", "W"], ["yt"], name="up", strides=[2, 2], pads=[1, 1, 1, 1]
            )
        ],
        "then",
        [],
        [_vi("yt")],
    )
    else_g = helper.make_graph(
        [helper.make_node("ConvTranspose", ["v_in", "W"], ["ye"], name="up", strides=[2, 2])],
        "else",
        [],
        [_vi("ye")],
    )
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
            helper.make_node(
                "If", ["flag"], ["u"], then_branch=then_g, else_branch=else_g, name="inner_if"
            ),
        ],
        "body",
        [
            _vi("i", (), TensorProto.INT64),
            _vi("cond_in", (), TensorProto.BOOL),
            _vi("v_in", (1, 3, 5, 5)),
        ],
        [_vi("cond_out", (), TensorProto.BOOL), _vi("v_out", (1, 3, 5, 5)), _vi("u")],
    )
    nodes = [helper.make_node("Loop", ["trip", "", "X"], ["v_final", "us"], body=body, name="loop")]
    m = _model(
        nodes,
        [_vi("X", (1, 3, 5, 5)), _vi("flag", (), TensorProto.BOOL)],
        [_vi("v_final"), _vi("us", None)],
        {"W": w, "trip": np.array(2, np.int64)},
    )
    m.graph.output[1].type.tensor_type.ClearField("shape")
    converted, report = deconv2sub.convert_model(m)
    assert len(report.rewritten) == 2
    assert {n.graph for n in report.nodes} == {
        "main/loop.body/inner_if.then_branch",
        "main/loop.body/inner_if.else_branch",
    }
    for flag in (True, False):
        feeds = {"X": _x(1, 3, 5, 5), "flag": np.array(flag)}
        for r, g in zip(run(m, feeds), run(converted, feeds)):
            np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-5)


def _function(weight_as_constant=True, strides_ref=False):
    w = _x(3, 2, 4, 4)
    nodes = []
    inputs = ["x"]
    if weight_as_constant:
        nodes.append(
            helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "w_value"))
        )
    else:
        inputs.append("w")
    ct = helper.make_node("ConvTranspose", ["x", "w"], ["t"], pads=[1, 1, 1, 1], name="fn_up")
    if strides_ref:
        attr = onnx.AttributeProto()
        attr.name, attr.ref_attr_name, attr.type = "strides", "s", onnx.AttributeProto.INTS
        ct.attribute.append(attr)
    else:
        ct.attribute.append(helper.make_attribute("strides", [2, 2]))
    nodes += [ct, helper.make_node("Relu", ["t"], ["y"])]
    fn = helper.make_function(
        "local",
        "UpRelu",
        inputs,
        ["y"],
        nodes,
        [helper.make_opsetid("", 17)],
        attributes=["s"] if strides_ref else [],
    )
    return fn, w


def test_model_local_function_called_twice():
    """A model-local function called twice is rewritten once; both calls equal ORT."""
    fn, _ = _function()
    nodes = [helper.make_node("UpRelu", ["X"], ["Y1"], domain="local", name="call1"),
             helper.make_node("UpRelu", ["X"], ["Y2"], domain="local", name="call2")]
    m = _model(nodes, [_vi("X", (1, 3, 5, 5))], [_vi("Y1"), _vi("Y2")], functions=[fn],
               opsets=(("", 17), ("local", 1)))
    onnx.checker.check_model(m, full_check=True)
    converted, report = deconv2sub.convert_model(m)
    assert len(report.rewritten) == 1 and report.nodes[0].graph == "function:local.UpRelu"
    assert len(converted.functions) == 1
    fn_ops = [n.op_type for n in converted.functions[0].node]
    # function weights are Constants
    assert "ConvTranspose" not in fn_ops and "Conv" in fn_ops and "Constant" in fn_ops
    assert {(o.domain, o.version) for o in converted.opset_import} == {("", 17), ("local", 1)}
    _check(m, converted, [{"X": _x(1, 3, 5, 5)}])


def test_function_weight_input_is_reported():
    """A weight that is a function input is declined, with the reason; the model is unchanged."""
    fn, w = _function(weight_as_constant=False)
    nodes = [helper.make_node("UpRelu", ["X", "W"], ["Y"], domain="local", name="call")]
    m = _model(
        nodes,
        [_vi("X", (1, 3, 5, 5))],
        [_vi("Y")],
        {"W": w},
        functions=[fn],
        opsets=(("", 17), ("local", 1)),
    )
    converted, report = deconv2sub.convert_model(m)
    assert not report.rewritten
    assert report.skipped[0].code == "weight_not_constant"
    assert "input of function 'UpRelu'" in report.skipped[0].reason
    assert converted.SerializeToString() == m.SerializeToString()


def test_function_attribute_reference_is_reported():
    """A function attribute reference (strides from the caller) is declined, with the reason."""
    fn, _ = _function(strides_ref=True)
    call = helper.make_node("UpRelu", ["X"], ["Y"], domain="local", name="call", s=[2, 2])
    m = _model(
        [call],
        [_vi("X", (1, 3, 5, 5))],
        [_vi("Y")],
        functions=[fn],
        opsets=(("", 17), ("local", 1)),
    )
    _, report = deconv2sub.convert_model(m)
    assert report.skipped[0].code == "attribute_reference"


def test_cli_converts_subgraph_model(tmp_path):
    """The CLI converts and verifies a model with a local function."""
    from click.testing import CliRunner

    from deconv2sub.cli import main

    fn, _ = _function()
    nodes = [helper.make_node("UpRelu", ["X"], ["Y"], domain="local", name="call")]
    m = _model(
        nodes,
        [_vi("X", ("N", 3, 5, 5))],
        [_vi("Y")],
        functions=[fn],
        opsets=(("", 17), ("local", 1)),
    )
    p = tmp_path / "fn.onnx"
    onnx.save(m, p)
    r = CliRunner().invoke(
        main, ["convert", str(p), "-o", str(tmp_path / "o.onnx")], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    assert "PASSED" in r.output and "[function:local.UpRelu]" in r.output
