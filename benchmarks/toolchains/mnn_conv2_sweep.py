#!/usr/bin/env python3
"""MNN's fp32 2x2 Conv against ONNX Runtime over channels, sizes and paddings.

The sweep behind the ``conv_kernel2_wide`` bug region (:func:`deconv2sub.targets.bugs.
conv_kernel2_wide`) and MNN's ``keep_when``: run with the project venv (MNN from
``.ci/toolchains/mnn.sh``); prints one row per shape, ``BAD`` where the max abs error is above 1e-3.

    .venv/bin/python benchmarks/toolchains/mnn_conv2_sweep.py
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from deconv2sub.toolchains import mnn  # noqa: E402

CHANNELS_IN = (32, 64, 128)
CHANNELS_OUT = (64, 128, 256)
SIZES = (16, 32, 33, 64)
PADS = ((0, 0, 0, 0), (1, 1, 1, 1), (0, 0, 1, 1))


def conv_model(rng, cin: int, cout: int, size: int, pads) -> onnx.ModelProto:
    """One 2x2 Conv, ``cin`` -> ``cout`` channels on a ``size`` x ``size`` input."""
    w = (0.1 * rng.standard_normal((cout, cin, 2, 2))).astype(np.float32)
    node = helper.make_node("Conv", ["X", "W"], ["Y"], kernel_shape=[2, 2], pads=list(pads))
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, cin, size, size])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "conv2", [x], [y], [numpy_helper.from_array(w, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def main() -> int:
    """Print the sweep; return 0."""
    reason = mnn.unavailable_reason()
    if reason:
        print(f"mnn unavailable: {reason}")
        return 1
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for cin, cout, size, pads in itertools.product(CHANNELS_IN, CHANNELS_OUT, SIZES, PADS):
            path = os.path.join(tmp, "conv2.onnx")
            onnx.save(conv_model(rng, cin, cout, size, pads), path)
            x = rng.standard_normal((1, cin, size, size)).astype(np.float32)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            ref = sess.run(None, {"X": x})[0]
            got = mnn.compile(path, {"X": (1, cin, size, size)}, tempfile.mkdtemp(dir=tmp))
            err = float(np.abs(got.run({"X": x})["Y"] - ref).max())
            flag = "BAD" if err > 1e-3 else ""
            shape = f"{cin:4d} -> {cout:4d}  {size:3d}x{size:<3d} pads {list(pads)}"
            print(f"{shape}  {err:.1e} {flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
