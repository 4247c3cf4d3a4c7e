"""deconv2sub.rewrite.shuffle: every emitted shuffle and crop, run by ONNX Runtime.

A Conv output ``z`` whose rows follow the plan's declared channel layout (``row_layout``: named
factors ``M`` and ``S<a>``) is shuffled and cropped by the emitted nodes; the reference is the
periodic shuffle by definition, ``Y[n, m, s*u + p] = z[n, row(m, p), u]``, then the plan's crop.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from builders import op_types, run

from deconv2sub.plan.layout import gather_crop, gather_shuffle_ok, output_labels, two_stage_labels
from deconv2sub.plan.subpixel import ConvTransposeAttrs, make_plan
from deconv2sub.rewrite.shuffle import (
    Emitter,
    emit_cascade_shuffle,
    emit_crop,
    emit_gather_shuffle,
    emit_permuted_shuffle,
    emit_shuffle,
    shuffle_kind,
)


def _plan(kernel, strides, pads, op, size, order):
    """A plan of a ConvTranspose with 2 input and 3 output channels."""
    w = np.zeros((2, 3) + tuple(kernel), np.float32)
    attrs = ConvTransposeAttrs(strides=list(strides), pads=list(pads), output_padding=list(op))
    return make_plan(w, None, attrs, list(size), order=order, fold_crop=True)


def _reference(plan, z):
    """The shuffle by definition from the declared row layout, then the plan's constant crop."""
    layout = plan.row_layout()
    names, sizes = [n for n, _ in layout], [v for _, v in layout]
    q = z.shape[2:]
    y = np.zeros((z.shape[0], plan.out_channels) + tuple(s * v for s, v in zip(plan.strides, q)),
                 z.dtype)
    for r, digits in enumerate(itertools.product(*[range(v) for v in sizes])):
        value = dict(zip(names, digits))
        phase = tuple(value.get(f"S{a}", 0) for a in range(plan.rank))
        cells = tuple(slice(p, None, s) for p, s in zip(phase, plan.strides))
        y[(slice(None), value["M"]) + cells] = z[:, r]
    crop = tuple(slice(a.crop_begin, y.shape[2 + i] - a.crop_end) for i, a in enumerate(plan.axes))
    return y[(slice(None), slice(None)) + crop]


def _run_emitted(plan, z_shape, write, crops=None, opset=17):
    """Build z -> ``write(em, z, shuffled)`` -> crop -> y, run it with ORT on random z."""
    names = set()

    def unique(name):
        while name in names:
            name += "_"
        names.add(name)
        return name

    em = Emitter("t", unique, opset)
    z = gs.Variable("z", np.float32, list(z_shape))
    shuffled = em.var("shuffled", np.float32)
    write(em, z, shuffled)
    y = gs.Variable("y", np.float32)
    emit_crop(em, plan, shuffled, y, crops)
    graph = gs.Graph(nodes=em.nodes, inputs=[z], outputs=[y], opset=opset)
    model = gs.export_onnx(graph)
    model.ir_version = 8
    values = np.random.default_rng(sum(z_shape)).standard_normal(z_shape).astype(np.float32)
    return run(model, {"z": values})[0], values, model


CASES = [
    # kernel, strides, pads, output_padding, input size
    ((4,), (2,), (1, 1), (0,), (5,)),
    ((16,), (8,), (4, 4), (0,), (3,)),
    ((3, 3), (2, 2), (1, 1, 0, 0), (1, 1), (4, 5)),
    ((4, 4), (2, 2), (1, 1, 1, 1), (0, 0), (3, 4)),
    ((3, 5), (2, 3), (0, 1, 2, 0), (1, 0), (3, 3)),
    ((3, 2), (1, 2), (1, 0, 0, 1), (0, 1), (4, 3)),
    ((2, 2, 2), (2, 2, 2), (0,) * 6, (0, 0, 0), (2, 3, 2)),
    ((3, 4, 3), (2, 2, 1), (1, 1, 0, 0, 1, 1), (1, 0, 0), (2, 2, 3)),
]


def _z_shape(plan, size, batch=2):
    return (batch, plan.out_channels * plan.phases) + tuple(
        i + a.growth for i, a in zip(size, plan.axes))


@pytest.mark.parametrize("known", [True, False])
@pytest.mark.parametrize("kernel, strides, pads, op, size", CASES)
def test_reshape_transpose_shuffle(kernel, strides, pads, op, size, known):
    """Reshape/Transpose/Reshape on CRD rows, with known or unknown sizes, then the crop."""
    plan = _plan(kernel, strides, pads, op, size, "CRD")
    in_spatial = list(size) if known else None

    def write(em, z, out):
        emit_shuffle(em, plan, "Reshape/Transpose", z, out, in_spatial)

    got, z, model = _run_emitted(plan, _z_shape(plan, size), write)
    np.testing.assert_array_equal(got, _reference(plan, z))
    if not known and plan.rank > 1:
        assert "Shape" in op_types(model)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_depth_to_space_shuffle(order):
    """DepthToSpace in the plan's mode (2-D equal strides)."""
    plan = _plan((4, 4), (2, 2), (1, 1, 1, 1), (0, 0), (3, 4), order)
    kind = shuffle_kind(plan, 17)
    assert kind == f"DepthToSpace({order})"

    def write(em, z, out):
        emit_shuffle(em, plan, kind, z, out, [3, 4])

    got, z, _ = _run_emitted(plan, _z_shape(plan, (3, 4)), write)
    np.testing.assert_array_equal(got, _reference(plan, z))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("two_stage", [False, True])
@pytest.mark.parametrize("kernel, strides, pads, op, size", CASES)
def test_permuted_shuffle(kernel, strides, pads, op, size, two_stage, channels_last):
    """Transposes through label orders: one Transpose (CRD), or the two-stage one (LCR rows)."""
    plan = _plan(kernel, strides, pads, op, size, "LCR" if two_stage else "CRD")
    stages = [two_stage_labels(plan), output_labels(plan)] if two_stage else [output_labels(plan)]

    def write(em, z, out):
        emit_permuted_shuffle(em, plan, stages, z, out, list(size), 2,
                              channels_last=channels_last)

    got, z, _ = _run_emitted(plan, _z_shape(plan, size), write)
    np.testing.assert_array_equal(got, _reference(plan, z))


@pytest.mark.parametrize("max_rank", [4, 5])
@pytest.mark.parametrize("kernel, strides, pads, op, size", CASES)
def test_cascade_shuffle_within_rank(kernel, strides, pads, op, size, max_rank):
    """The block-swap cascade: every Transpose of at most ``max_rank`` axes."""
    plan = _plan(kernel, strides, pads, op, size, "CRD")

    def write(em, z, out):
        emit_cascade_shuffle(em, plan, z, out, list(size), 2, max_rank)

    got, z, model = _run_emitted(plan, _z_shape(plan, size), write)
    np.testing.assert_array_equal(got, _reference(plan, z))
    for node in model.graph.node:
        if node.op_type == "Transpose":
            assert len(node.attribute[0].ints) <= max_rank


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("kernel, strides, pads, op, size",
                         [c for c in CASES if len(c[0]) in (2, 3) and c[1][-1] > 1])
def test_gather_shuffle_and_its_crop(kernel, strides, pads, op, size, batch):
    """One 2-D Transpose + a row Gather (LCR rows), then the crop the Gather left."""
    plan = _plan(kernel, strides, pads, op, size, "LCR")
    assert gather_shuffle_ok(plan, list(size))

    def write(em, z, out):
        emit_gather_shuffle(em, plan, z, out, list(size), batch)

    got, z, model = _run_emitted(plan, _z_shape(plan, size, batch), write, gather_crop(plan))
    np.testing.assert_array_equal(got, _reference(plan, z))
    assert op_types(model).count("Gather") == 1
