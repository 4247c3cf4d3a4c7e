"""Shared fixtures of the runtime tests: a small ConvTranspose model and its definition."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

STRIDE = 2


def _conv_transpose_model(np_dtype=np.float32, node_name="", weights_seed=0):
    """x[N,2,4,4] -> ConvTranspose(stride 2, 3x3) -> y[N,3,9,9] -> Relu -> z; returns (model, w)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    w = np.random.default_rng(weights_seed).standard_normal((2, 3, 3, 3)).astype(np_dtype)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[STRIDE, STRIDE],
                         name=node_name),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("z", elem, None),
         helper.make_tensor_value_info("y", elem, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model, w


def _scatter_reference(x, w):
    """ConvTranspose (no padding, groups 1) by its definition: scatter-add of x * w."""
    n, _, h, wd = x.shape
    k = w.shape[2]
    y = np.zeros((n, w.shape[1], (h - 1) * STRIDE + k, (wd - 1) * STRIDE + k), np.float64)
    for i in range(k):
        for j in range(k):
            y[:, :, i : i + STRIDE * h : STRIDE, j : j + STRIDE * wd : STRIDE] += np.einsum(
                "nchw,cd->ndhw", x, w[:, :, i, j])
    return y


@pytest.fixture
def make_model():
    """The model builder: ``make_model(np_dtype, node_name, weights_seed) -> (model, w)``."""
    return _conv_transpose_model


@pytest.fixture
def scatter_reference():
    """ConvTranspose by its definition: ``scatter_reference(x, w) -> y``."""
    return _scatter_reference


@pytest.fixture(scope="module")
def model():
    """(float32 model, its weight)."""
    return _conv_transpose_model()


@pytest.fixture
def x():
    """A batch of two inputs of the model."""
    return np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
