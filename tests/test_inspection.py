"""deconv2sub.inspection: the planned emission equals what convert emits.

MACs and bytes are right.
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from builders import convtranspose_model
from onnx import TensorProto, helper, numpy_helper
from surface_builders import two_deconv_model

import deconv2sub
from deconv2sub.errors import InputError
from deconv2sub.inspection import format_bytes, format_count, inspect_model
from deconv2sub.rewrite.options import ConvertOptions

# import-time constants draw from this one; every test gets a fresh one (_fresh_rng)
RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def _fresh_rng(monkeypatch):
    """Each test draws from its own generator, seeded alike: values never depend on test order."""
    monkeypatch.setattr(sys.modules[__name__], "RNG", np.random.default_rng(3))


CONFIGS = [
    # (in_shape, weight shape, attrs, bias)
    ((1, 4, 5, 5), (4, 3, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1]), True),
    (
        (1, 4, 5, 6),
        (4, 2, 3, 3),
        dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
        False,
    ),
    ((1, 4, 5, 6), (4, 2, 3, 2), dict(strides=[3, 2], dilations=[2, 1]), True),
    ((1, 6, 4, 4), (6, 1, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1], group=6), True),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER"), False),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(strides=[2, 2], output_shape=[10, 10]), True),
    ((1, 4, 7), (4, 2, 5), dict(strides=[4], pads=[1, 2]), True),
    ((1, 2, 3, 4, 2), (2, 3, 2, 2, 2), dict(strides=[2, 2, 2]), True),
    ((1, 4, 5, 5), (4, 2, 3, 3), dict(strides=[1, 1], pads=[1, 1, 1, 1]), False),
]


def _model(in_shape, wshape, attrs, bias):
    w = RNG.standard_normal(wshape).astype(np.float32)
    m_out = wshape[1] * attrs.get("group", 1)
    b = RNG.standard_normal(m_out).astype(np.float32) if bias else None
    return convtranspose_model(list(in_shape), w, b, **attrs), w, b


def _conv_costs(converted: onnx.ModelProto, new_nodes):
    """Independent numbers from the converted model itself.

    MACs from inferred Conv output shapes.
    """
    inferred = onnx.shape_inference.infer_shapes(converted)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    inits = {t.name: numpy_helper.to_array(t) for t in converted.graph.initializer}
    macs = nbytes = 0
    for node in converted.graph.node:
        if node.name in new_nodes and node.op_type == "Conv":
            w = inits[node.input[1]]
            macs += w.size * int(np.prod(shapes[node.output[0]][2:]))
            nbytes += sum(inits[i].nbytes for i in node.input[1:] if i)
        if node.name in new_nodes and node.op_type == "Gemm":  # [rows, C] x [C, L] -> [rows, L]
            w = inits[node.input[0]]
            macs += w.size * shapes[node.output[0]][1]
            nbytes += sum(inits[i].nbytes for i in node.input if i in inits)
    return macs, nbytes


@pytest.mark.parametrize("in_shape,wshape,attrs,bias", CONFIGS)
def test_plan_matches_convert_and_costs_are_exact(in_shape, wshape, attrs, bias):
    """The plan ``inspect`` shows equals what convert emits; MACs and bytes are exact."""
    model, w, b = _model(in_shape, wshape, attrs, bias)
    before = model.SerializeToString()
    report = inspect_model(model)
    assert model.SerializeToString() == before  # not modified
    (node,) = report.nodes
    converted, conv_report = deconv2sub.convert_model(model)
    (entry,) = conv_report.nodes
    assert node.rewritable and entry.rewritten
    assert node.choice == (getattr(entry, "strategy", None) or "subpixel")
    for key in (
        "conv_kernel",
        "conv_channels",
        "conv_dilations",
        "conv_pads",
        "group",
        "shuffle",
        "crop",
    ):
        assert node.emission[key] == getattr(entry, key), key
    assert node.input_shape == list(in_shape) and node.weight_shape == list(wshape)
    assert node.macs_before == w.size * int(np.prod(in_shape[2:]))
    assert node.weight_bytes_before == w.nbytes + (0 if b is None else b.nbytes)
    macs_after, bytes_after = _conv_costs(converted, set(entry.new_nodes))
    assert node.macs_after == macs_after
    assert node.weight_bytes_after == bytes_after
    t = report.totals
    assert (t.nodes, t.rewritable, t.macs_before, t.macs_after) == (
        1,
        1,
        node.macs_before,
        node.macs_after,
    )


@pytest.mark.parametrize("shuffle,order", [("reshape", "auto"), ("auto", "DCR")])
def test_emission_options_are_honoured(shuffle, order):
    """``inspect`` honours the shuffle and order options as convert does."""
    model, _, _ = _model((1, 4, 5, 5), (4, 3, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1]), True)
    options = ConvertOptions(shuffle=shuffle, order=order)
    (node,) = inspect_model(model, options).nodes
    (entry,) = deconv2sub.convert_model(model, options)[1].nodes
    assert node.emission["shuffle"] == entry.shuffle


def test_skipped_node_reason_and_unchanged_costs():
    """A kept node shows its reason and unchanged costs."""
    w = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    model = convtranspose_model([1, 4, 5, 5], w, None, weight_as="input", strides=[2, 2])
    (node,) = inspect_model(model).nodes
    assert not node.rewritable and node.choice == "keep" and node.code == "weight_not_constant"
    assert node.code == "weight_not_constant" and node.to_dict()["code"] == "weight_not_constant"
    assert node.why == node.reason and node.emission is None
    assert node.macs_before == node.macs_after == w.size * 25
    assert node.weight_bytes_before is None  # the weight is data fed at run time
    assert "kept as ConvTranspose" in node.emission_text()


def test_symbolic_dims_and_input_shapes():
    """Symbolic dims leave sizes unknown until ``input_shapes`` fixes them."""
    model = two_deconv_model(shape=("N", 8, "H", "W"))
    report = inspect_model(model)
    assert [n.name for n in report.nodes] == ["up1", "up2"]
    assert all(n.macs_before is None and n.rewritable for n in report.nodes)
    assert all(n.macs_per_input_pixel_before and n.weight_bytes_before for n in report.nodes)
    sized = inspect_model(model, input_shapes={"x": (1, 8, 5, 5)})
    # the same model with its spatial sizes fixed (the batch stays symbolic: it can change the
    # choice)
    fixed = inspect_model(two_deconv_model(shape=("N", 8, 5, 5)))
    assert [n.macs_after for n in sized.nodes] == [n.macs_after for n in fixed.nodes]
    assert sized.nodes[1].input_shape == [1, 4, 10, 10]
    assert sized.input_shapes == {"x": [1, 8, 5, 5]}
    with pytest.raises(InputError, match="not a model input"):
        inspect_model(model, input_shapes={"nope": (1, 8, 5, 5)})
    with pytest.raises(InputError, match="rank"):
        inspect_model(model, input_shapes={"x": (1, 8, 5)})


def _if_model():
    """A ConvTranspose in each branch of an If (subgraphs), besides one in the main graph."""
    w = numpy_helper.from_array(RNG.standard_normal((2, 2, 4, 4)).astype(np.float32), "w")

    def branch(name):
        node = helper.make_node(
            "ConvTranspose",
            ["x", "w"],
            [f"{name}_y"],
            name=f"{name}_deconv",
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        )
        return helper.make_graph(
            [node], name, [], [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, None)]
        )

    nodes = [
        helper.make_node(
            "ConvTranspose", ["x", "w"], ["main_y"], name="main_deconv", strides=[2, 2]
        ),
        helper.make_node(
            "If",
            ["cond"],
            ["y"],
            name="branchy",
            then_branch=branch("then"),
            else_branch=branch("else"),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("main_y", TensorProto.FLOAT, None),
        ],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_subgraphs_included():
    """Nodes inside If branches are inspected too."""
    report = inspect_model(_if_model())
    by_name = {n.name: n for n in report.nodes}
    assert set(by_name) == {"main_deconv", "then_deconv", "else_deconv"}
    assert by_name["main_deconv"].graph == "main"
    assert by_name["then_deconv"].graph.startswith("main/branchy.then_branch")
    assert all(n.rewritable for n in report.nodes)
    assert by_name["then_deconv"].input_shape == [1, 2, 4, 4]  # outer-scope tensor
    text = report.format_text()
    assert "[main/branchy.then_branch]" in text


def test_no_convtranspose():
    """A model without ConvTranspose gives an empty report that says so."""
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    report = inspect_model(model)
    assert report.nodes == [] and "no ConvTranspose" in report.format_text()
    assert report.summary().startswith("0 ConvTranspose: ")


def test_text_fits_80_columns_with_long_names_and_attributes():
    """The text report fits 80 columns even with long names and attributes."""
    w = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    model = convtranspose_model(
        [1, 4, 5, 5],
        w,
        None,
        strides=[3, 2],
        dilations=[2, 1],
        output_padding=[1, 1],
        pads=[2, 1, 0, 3],
        name="/decoder/upsample_block_3/very_long_module_name/ConvTranspose",
    )
    text = inspect_model(model, path="model.onnx").format_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    # attributes too long for their column: in full below
    assert "[k3 s3x2 d2x1 p2,1,0,3 op1 g1]" in text
    assert "total: 1 of 1 rewritable" in text


def test_json_ready():
    """``to_dict`` survives a JSON round trip and has the documented keys."""
    import json

    data = json.loads(json.dumps(inspect_model(two_deconv_model()).to_dict()))
    assert data["totals"]["nodes"] == 2 and data["nodes"][0]["choice"] not in (None, "keep")
    assert {
        "macs_before",
        "macs_after",
        "weight_bytes_before",
        "weight_bytes_after",
        "emission",
        "why",
        "attributes",
        "input_shape",
    } <= set(data["nodes"][0])


def test_number_formats():
    """format_count and format_bytes round to 3 significant digits with SI units."""
    assert [format_count(v) for v in (None, 0, 950, 1000, 16400, 1.64e6, 123.4e9, 5e15)] == \
        ["?", "0", "950", "1k", "16.4k", "1.64M", "123G", "5000T"]
    assert (
        format_count(1_640_000) == "1.64M"
        and format_count(950) == "950"
        and format_count(None) == "?"
    )
    assert (
        format_bytes(64) == "64B"
        and format_bytes(131_072) == "131kB"
        and format_bytes(2_300_000) == "2.3MB"
    )
