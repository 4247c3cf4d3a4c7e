"""Shared helpers of the io tests: a small model, writing it, checking one-line errors."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deconv2sub.io.save import save_model

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def make_model(n: int = 4, seed: int = 0) -> onnx.ModelProto:
    """Y = x + w with a float32 weight of n*n elements (n=32 gives a 4 KiB initializer)."""
    w = np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def weight(model: onnx.ModelProto) -> np.ndarray:
    """The model's first initializer as an array."""
    return numpy_helper.to_array(model.graph.initializer[0])


def write(path: pathlib.Path, model: onnx.ModelProto) -> pathlib.Path:
    """Serialize ``model`` to ``path`` (no external data); returns ``path``."""
    path.write_bytes(model.SerializeToString())
    return path


def assert_one_line(excinfo, *names) -> None:
    """The raised error is one non-empty, stripped line naming each of ``names``."""
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for name in names:
        assert str(name) in msg, msg


def leftovers(directory: pathlib.Path, *expected: str) -> list:
    """Files in directory other than the expected ones (temp files, partial files)."""
    return sorted(p.name for p in directory.iterdir() if p.name not in expected)


def save_external(tmp_path: pathlib.Path, name: str = "ext.onnx") -> pathlib.Path:
    """:func:`make_model` (4 KiB weight) saved with external data as ``tmp_path/name``."""
    path = tmp_path / name
    save_model(make_model(32), path, external_data=True)
    return path
