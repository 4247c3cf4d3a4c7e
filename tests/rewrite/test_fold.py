"""Weights (and biases) computed in the graph from constants only are folded, then rewritten.

ONNX Runtime running the ORIGINAL model is the oracle; the folded producers that nobody else uses
are gone afterwards, those still used elsewhere (other nodes, graph outputs) keep working.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from builders import assert_equivalent, op_types, run
from onnx import TensorProto, helper, numpy_helper

import deconv2sub
from deconv2sub.rewrite import fold

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(42)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(42))


F = TensorProto.FLOAT


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _model(nodes, inits, outputs=("Y",), extra_inputs=(), opset=17, x_shape=(1, 3, 5, 5)):
    inputs = [helper.make_tensor_value_info("X", F, list(x_shape))] + list(extra_inputs)
    outs = [helper.make_tensor_value_info(o, F, ["a", "b", "c", "d"]) for o in outputs]
    graph = helper.make_graph(
        nodes, "g", inputs, outs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _convert(model, expect_rewritten=1):
    onnx.checker.check_model(model, full_check=True)
    converted, report = deconv2sub.convert_model(model)
    assert len(report.rewritten) == expect_rewritten, [n.reason for n in report.skipped]
    onnx.checker.check_model(converted, full_check=True)
    assert_equivalent(model, converted, {"X": _x(1, 3, 5, 5)})
    return converted, report


def _ct(w="W", b=None, out="Y", name="up", **attrs):
    attrs = {"strides": [2, 2], "pads": [1, 1, 1, 1], **attrs}
    return helper.make_node(
        "ConvTranspose", ["X", w] + ([b] if b else []), [out], name=name, **attrs
    )


def test_transpose_cast_reshape_identity_chain():
    """A weight behind Identity, Cast, Reshape and Transpose is folded and the chain removed."""
    w = _x(3, 2, 4, 4)
    # [k,k,M,C] flat
    stored = np.ascontiguousarray(w.transpose(2, 3, 1, 0)).astype(np.float16).reshape(16, 6)
    nodes = [
        helper.make_node("Identity", ["Ws"], ["w0"], name="id"),
        helper.make_node("Cast", ["w0"], ["w1"], to=F, name="cast"),
        helper.make_node("Reshape", ["w1", "shape"], ["w2"], name="reshape"),
        helper.make_node("Transpose", ["w2"], ["W"], perm=[3, 2, 0, 1], name="transpose"),
        _ct(),
    ]
    m = _model(nodes, {"Ws": stored, "shape": np.array([4, 4, 2, 3], np.int64)})
    converted, report = _convert(m)
    assert report.nodes[0].notes == ["weight folded from 4 constant nodes"]
    assert "weight folded from 4 constant nodes" in report.nodes[0].summary()
    assert not {"id", "cast", "reshape", "transpose"} & {n.name for n in converted.graph.node}
    assert "Ws" not in {i.name for i in converted.graph.initializer}


def test_weight_normalisation_arithmetic_and_folded_bias():
    """weight_norm as exported: W = g * v / ||v|| (ReduceL2 over all but axis 0), bias = b0 + b1."""
    v = _x(3, 2, 3, 3)
    g = np.abs(_x(3, 1, 1, 1)) + 0.5
    nodes = [
        helper.make_node("ReduceL2", ["v"], ["norm"], axes=[1, 2, 3], keepdims=1, name="norm"),
        helper.make_node("Div", ["v", "norm"], ["dir"], name="div"),
        helper.make_node("Mul", ["g", "dir"], ["W"], name="mul"),
        helper.make_node("Add", ["b0", "b1"], ["B"], name="badd"),
        _ct("W", "B", strides=[2, 2], pads=[0, 0, 0, 0], output_padding=[1, 1]),
    ]
    m = _model(nodes, {"v": v, "g": g, "b0": _x(2), "b1": _x(2)}, opset=13)
    converted, report = _convert(m)
    assert sorted(report.nodes[0].notes) == [
        "bias folded from 1 constant node",
        "weight folded from 3 constant nodes",
    ]
    # (>= 1: k3 s2 is emitted as one Conv per phase by the default strategy)
    assert op_types(converted).count("Conv") >= 1 and "ReduceL2" not in op_types(converted)


def test_constant_of_shape_scatter_nd():
    """Some exporters build a weight as zeros + ScatterND (slice assignment)."""
    w = _x(3, 2, 4, 4)
    nodes = [
        helper.make_node("ConstantOfShape", ["wshape"], ["zeros"], name="zeros",
                         value=numpy_helper.from_array(np.zeros(1, np.float32))),
        helper.make_node("ScatterND", ["zeros", "idx", "upd"], ["W"], name="scatter"),
        _ct(),
    ]
    idx = np.array([[0], [2]], np.int64)  # rows 0 and 2 set, row 1 stays zero
    upd = w[[0, 2]]
    m = _model(nodes, {"wshape": np.array(w.shape, np.int64), "idx": idx, "upd": upd})
    converted, report = _convert(m)
    assert report.nodes[0].notes == ["weight folded from 2 constant nodes"]
    # (every Conv weight: the default strategy may emit one Conv per phase, subpixel_weight,
    # subpixel_weight_p1, ...)
    conv_ws = [
        numpy_helper.to_array(i) for i in converted.graph.initializer if "subpixel_weight" in i.name
    ]
    assert sum(np.count_nonzero(w) for w in conv_ws) == np.count_nonzero(upd)


def test_constant_nodes_as_leaves_and_constant_weight_node_is_dropped():
    """Constant nodes are fold leaves and die with the folded weight."""
    w = _x(3, 2, 4, 4)
    nodes = [
        helper.make_node(
            "Constant",
            [],
            ["half"],
            value=numpy_helper.from_array(np.float32(0.5).reshape(()), "h"),
        ),
        helper.make_node("Constant", [], ["W0"], value=numpy_helper.from_array(w, "w0")),
        helper.make_node("Mul", ["W0", "half"], ["W"], name="scale"),
        _ct(),
    ]
    converted, report = _convert(_model(nodes, {}))
    assert report.nodes[0].notes == ["weight folded from 1 constant node"]
    assert op_types(converted).count("Constant") == 0 and "Mul" not in op_types(converted)


def test_folded_weight_shared_by_two_nodes_and_a_graph_output():
    """A folded weight shared by two nodes and a graph output keeps its producer."""
    w = _x(3, 2, 4, 4)
    nodes = [
        helper.make_node("Transpose", ["Wt"], ["W"], perm=[1, 0, 2, 3], name="t"),
        _ct(out="Y1", name="up1"),
        _ct(out="Y2", name="up2", pads=[0, 0, 0, 0]),
    ]
    m = _model(
        nodes, {"Wt": np.ascontiguousarray(w.transpose(1, 0, 2, 3))}, outputs=("Y1", "Y2", "W")
    )
    converted, report = _convert(m, expect_rewritten=2)
    assert [n.notes for n in report.nodes] == [["weight folded from 1 constant node"]] * 2
    # The folded tensor is still a graph output: its producer stays, the ConvTransposes are gone.
    assert "t" in {n.name for n in converted.graph.node} and "ConvTranspose" not in op_types(
        converted
    )
    np.testing.assert_array_equal(run(converted, {"X": _x(1, 3, 5, 5)})[2], w)


def test_initializer_weight_also_used_elsewhere():
    """An initializer weight that something else reads stays in the model."""
    w = _x(3, 2, 4, 4)
    nodes = [_ct(), helper.make_node("ReduceSum", ["W"], ["S"], keepdims=1, name="sum")]
    converted, _ = _convert(_model(nodes, {"W": w}, outputs=("Y", "S")))
    assert "W" in {i.name for i in converted.graph.initializer}


def test_weight_from_graph_input_is_skipped_with_reason():
    """A weight computed from a graph input is declined, naming the node and input."""
    nodes = [helper.make_node("Mul", ["W0", "gain"], ["W"], name="gain_mul"), _ct()]
    m = _model(
        nodes, {"W0": _x(3, 2, 4, 4)}, extra_inputs=[helper.make_tensor_value_info("gain", F, [1])]
    )
    converted, report = deconv2sub.convert_model(m)
    assert not report.rewritten
    assert report.skipped[0].code == "weight_not_constant"
    reason = report.skipped[0].reason
    assert "'W' is computed at run time by Mul node 'gain_mul'" in reason and "'gain'" in reason, (
        reason
    )
    assert op_types(converted) == ["Mul", "ConvTranspose"]


def test_random_op_is_not_folded():
    """A weight from a random op is declined as non-deterministic."""
    nodes = [helper.make_node("RandomNormal", [], ["W"], shape=[3, 2, 4, 4], name="rnd"), _ct()]
    _, report = deconv2sub.convert_model(_model(nodes, {}))
    assert report.skipped[0].code == "weight_not_constant"
    assert "non-deterministic" in report.skipped[0].reason


def test_size_bound(monkeypatch):
    """A fold producing more than MAX_BYTES is declined."""
    monkeypatch.setattr(fold, "MAX_BYTES", 1000)
    nodes = [
        helper.make_node("ConstantOfShape", ["wshape"], ["W"], name="huge",
                         value=numpy_helper.from_array(np.ones(1, np.float32))),
        _ct(),
    ]
    _, report = deconv2sub.convert_model(
        _model(nodes, {"wshape": np.array([3, 2, 40, 40], np.int64)})
    )
    assert report.skipped[0].code == "weight_not_constant"
    assert "would produce" in report.skipped[0].reason


def test_node_count_bound(monkeypatch):
    """A fold needing more than MAX_NODES nodes is declined."""
    monkeypatch.setattr(fold, "MAX_NODES", 5)
    nodes = [
        helper.make_node("Identity", [f"w{i}"], [f"w{i + 1}"], name=f"id{i}") for i in range(8)
    ]
    nodes.append(_ct(w="w8"))
    _, report = deconv2sub.convert_model(_model(nodes, {"w0": _x(3, 2, 4, 4)}))
    assert report.skipped[0].code == "weight_not_constant"
    assert "more than 5 nodes" in report.skipped[0].reason


def test_fold_failure_is_a_reason_not_a_crash():
    """A producer that fails to evaluate is a refusal, not a crash."""
    nodes = [helper.make_node("Reshape", ["W0", "bad"], ["W"], name="bad_reshape"), _ct()]
    _, report = deconv2sub.convert_model(
        _model(nodes, {"W0": _x(3, 2, 4, 4), "bad": np.array([7, 7], np.int64)})
    )
    assert report.skipped[0].code == "weight_not_constant"
    assert "evaluating Reshape node 'bad_reshape' failed" in report.skipped[0].reason


def test_fold_inside_if_branch_with_outer_scope_constant():
    """The chain lives in the branch; its leaf is an initializer of the main graph."""
    w = _x(3, 2, 4, 4)
    branch_nodes = [
        helper.make_node("Transpose", ["Wt"], ["Wb"], perm=[1, 0, 2, 3], name="bt"),
        helper.make_node("ConvTranspose", ["X", "Wb"], ["yb"], name="up_then", strides=[2, 2]),
    ]
    then_g = helper.make_graph(
        branch_nodes, "then", [], [helper.make_tensor_value_info("yb", F, ["a", "b", "c", "d"])]
    )
    else_g = helper.make_graph(
        [helper.make_node("ConvTranspose", ["X", "W2"], ["ye"], name="up_else", strides=[2, 2])],
        "else",
        [],
        [helper.make_tensor_value_info("ye", F, ["a", "b", "c", "d"])],
    )
    nodes = [
        helper.make_node("If", ["cond"], ["Y"], then_branch=then_g, else_branch=else_g, name="if")
    ]
    m = _model(nodes, {"Wt": np.ascontiguousarray(w.transpose(1, 0, 2, 3)), "W2": w},
               extra_inputs=[helper.make_tensor_value_info("cond", TensorProto.BOOL, [])])
    converted, report = deconv2sub.convert_model(m)
    assert len(report.rewritten) == 2, [n.reason for n in report.skipped]
    onnx.checker.check_model(converted, full_check=True)
    for cond in (True, False):
        feeds = {"X": _x(1, 3, 5, 5), "cond": np.array(cond)}
        np.testing.assert_allclose(run(converted, feeds)[0], run(m, feeds)[0], rtol=1e-5, atol=1e-5)


def test_weight_from_loop_state_is_skipped():
    """Inside a Loop body a tensor computed from a loop-carried value is not a constant."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["w_in", "W0"], ["w_out"], name="acc"),
            helper.make_node(
                "ConvTranspose", ["X", "w_out"], ["y"], name="up_loop", strides=[2, 2]
            ),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("w_in", F, [3, 2, 4, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("w_out", F, [3, 2, 4, 4]),
            helper.make_tensor_value_info("y", F, ["a", "b", "c", "d"]),
        ],
    )
    nodes = [helper.make_node("Loop", ["trip", "", "W0"], ["w_final", "Y"], body=body, name="loop")]
    m = _model(nodes, {"W0": _x(3, 2, 4, 4), "trip": np.array(2, np.int64)})
    _, report = deconv2sub.convert_model(m)
    assert report.skipped and report.skipped[0].code == "weight_not_constant"
    assert "known only at run time" in report.skipped[0].reason, report.skipped[0].reason


def test_cli_runtime_weight_left_in_place_exit_0(tmp_path):
    """A weight that is a graph input: left in place, reported, exit 0 (nothing to verify)."""
    from builders import convtranspose_model
    from click.testing import CliRunner

    from deconv2sub.cli import main

    m = convtranspose_model([1, 2, 4, 4], _x(2, 1, 4, 4), None, weight_as="input", strides=[2, 2])
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    r = CliRunner().invoke(
        main, ["convert", str(p), "-o", str(tmp_path / "o.onnx")], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    assert "skipped: weight 'W' is a graph input (known only at run time)" in r.output
    assert op_types(onnx.load(tmp_path / "o.onnx")) == ["ConvTranspose"]
