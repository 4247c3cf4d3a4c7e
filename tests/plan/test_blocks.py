"""deconv2sub.plan.blocks: block sizes by brute force, DepthToSpace and cascades against ORT."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from builders import run
from onnx import TensorProto, helper

from deconv2sub.plan.blocks import block_factors, d2s_cascade_rows, depth_to_space_np
from deconv2sub.plan.subpixel import ConvTransposeAttrs, make_plan


def _factorisations(n: int, largest: int):
    """Every multiset of factors >= 2 (non-increasing, each <= ``largest``) whose product is n."""
    if n == 1:
        yield []
        return
    for f in range(min(n, largest), 1, -1):
        if n % f == 0:
            for rest in _factorisations(n // f, f):
                yield [f] + rest


@pytest.mark.parametrize("max_block", [0, 2, 3, 4, 5, 8])
def test_block_factors_against_every_factorisation(max_block):
    """Valid blocks, largest first; None exactly when no factorisation fits; the fewest blocks."""
    for stride in range(1, 65):
        got = block_factors(stride, max_block)
        limit = stride if max_block == 0 else max_block
        options = list(_factorisations(stride, limit)) if stride > 1 else [[1]]
        if not options:
            assert got is None, (stride, max_block)
            continue
        assert got is not None and int(np.prod(got)) == stride, (stride, max_block, got)
        assert got == sorted(got, reverse=True) and all(b <= limit for b in got)
        assert len(got) == min(len(o) for o in options), (stride, max_block, got)


def _d2s_model(shape, blocks, modes):
    """X -> DepthToSpace(blocks[0], modes[0]) -> ... -> Y, opset 13."""
    nodes, prev = [], "X"
    for i, (b, mode) in enumerate(zip(blocks, modes)):
        out = "Y" if i == len(blocks) - 1 else f"t{i}"
        nodes.append(helper.make_node("DepthToSpace", [prev], [out], blocksize=b, mode=mode))
        prev = out
    graph = helper.make_graph(
        nodes, "d2s", [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("b", [2, 3])
def test_depth_to_space_np_equals_ort(mode, b):
    """The numpy DepthToSpace equals ONNX Runtime's operator."""
    x = np.random.default_rng(b).standard_normal((2, 3 * b * b, 3, 4)).astype(np.float32)
    expected = run(_d2s_model(x.shape, [b], [mode]), {"X": x})[0]
    np.testing.assert_array_equal(depth_to_space_np(x, b, mode), expected)


CASCADES = [((4, 2), ("CRD", "CRD")), ((2, 4), ("DCR", "CRD")), ((2, 2, 2), ("DCR",) * 3),
            ((2, 3), ("CRD", "DCR")), ((3,), ("DCR",))]


def _needed_order(rows: int, blocks, modes) -> np.ndarray:
    """The Conv row order the cascade needs, found with ORT on row indices (no plan involved)."""
    index = np.arange(rows, dtype=np.float32).reshape(1, rows, 1, 1)
    s = int(np.prod(blocks))
    lands = run(_d2s_model(index.shape, blocks, modes), {"X": index})[0].ravel().astype(int)
    wants = run(_d2s_model(index.shape, [s], ["CRD"]), {"X": index})[0].ravel().astype(int)
    needed = np.empty(rows, dtype=np.int64)
    needed[lands] = wants  # the Conv row that lands at a cell must hold the CRD row wanted there
    return needed


@pytest.mark.parametrize("blocks, modes", CASCADES)
@pytest.mark.parametrize("group", [1, 2, 3])
def test_cascade_rows_land_every_channel_and_phase(blocks, modes, group):
    """d2s_cascade_rows is the order ORT's cascade needs; None iff it would mix groups."""
    s = int(np.prod(blocks))
    m_per_group = 2
    w = np.zeros((group, m_per_group, s, s), np.float32)
    plan = make_plan(w, None, ConvTransposeAttrs(strides=[s, s], group=group), [3, 2])
    rows = plan.out_channels * plan.phases
    needed = _needed_order(rows, blocks, modes)
    per_group = rows // group
    mixes = bool(np.any(needed // per_group != np.arange(rows) // per_group))
    order = d2s_cascade_rows(plan, blocks, modes)
    if mixes:
        assert order is None
        return
    assert np.array_equal(order, needed)
    z = np.random.default_rng(s).standard_normal((1, rows, 3, 2)).astype(np.float32)
    reference = run(_d2s_model(z.shape, [s], ["CRD"]), {"X": z})[0]
    got = run(_d2s_model(z.shape, blocks, modes), {"X": np.ascontiguousarray(z[:, order])})[0]
    np.testing.assert_array_equal(got, reference)


def test_cascade_rows_are_a_permutation():
    """Every row is used once, whatever the blocks and modes."""
    for blocks in [(2, 2), (4, 2), (2, 2, 2), (3, 2)]:
        s = int(np.prod(blocks))
        plan = make_plan(np.zeros((1, 3, s, s), np.float32), None,
                         ConvTransposeAttrs(strides=[s, s]), [2, 2])
        for modes in itertools.product(["CRD", "DCR"], repeat=len(blocks)):
            order = d2s_cascade_rows(plan, blocks, modes)
            assert sorted(order.tolist()) == list(range(3 * s * s))
