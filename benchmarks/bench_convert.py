#!/usr/bin/env python3
"""Conversion speed: a model with many ConvTranspose nodes, converted without verification.

    .venv/bin/python benchmarks/bench_convert.py [--nodes 200] [--profile] [--strategy default]

The model is a decoder-like chain: ``nodes`` times (ConvTranspose k4 s2 p1 -> Relu -> Conv k3 s2
p1), so every ConvTranspose has a known input size and distinct weights (C channels, HxW spatial).
Prints the wall time of :func:`deconv2sub.convert_model` (best of ``--repeat``), its phases, and
with ``--profile`` the top functions by cumulative time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import deconv2sub  # noqa: E402
from deconv2sub import ConvertOptions  # noqa: E402


def build_chain(nodes: int, channels: int = 16, size: int = 16, seed: int = 0) -> onnx.ModelProto:
    """The chain of ``nodes`` ConvTranspose -> Relu -> Conv steps (opset 17, IR 8, float32)."""
    rng = np.random.default_rng(seed)
    inits, graph_nodes = [], []
    t = "X"
    for i in range(nodes):
        wt = (0.1 * rng.standard_normal((channels, channels, 4, 4))).astype(np.float32)
        wc = (0.1 * rng.standard_normal((channels, channels, 3, 3))).astype(np.float32)
        b = (0.1 * rng.standard_normal(channels)).astype(np.float32)
        inits += [numpy_helper.from_array(wt, f"up{i}_w"), numpy_helper.from_array(b, f"up{i}_b"),
                  numpy_helper.from_array(wc, f"down{i}_w")]
        graph_nodes += [
            helper.make_node("ConvTranspose", [t, f"up{i}_w", f"up{i}_b"], [f"up{i}"],
                             name=f"up{i}", strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[4, 4]),
            helper.make_node("Relu", [f"up{i}"], [f"relu{i}"], name=f"relu{i}"),
            helper.make_node("Conv", [f"relu{i}", f"down{i}_w"], [f"down{i}"], name=f"down{i}",
                             strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        ]
        t = f"down{i}"
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, channels, size, size])
    y = helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
    graph = helper.make_graph(graph_nodes, "chain", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--strategy", default="default")
    p.add_argument("--profile", action="store_true", help="print the cProfile top functions")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)

    model = build_chain(args.nodes)
    options = ConvertOptions(strategy=args.strategy)
    print(f"model: {args.nodes} ConvTranspose + {args.nodes} Conv + {args.nodes} Relu, "
          f"{model.ByteSize() / 1e6:.1f} MB, strategy {args.strategy}")
    best = None
    for _ in range(args.repeat):
        t = time.perf_counter()
        converted, report = deconv2sub.convert_model(model, options)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    assert len(report.rewritten) == args.nodes and not report.skipped, report.summary()
    print(f"convert_model (no verification): best of {args.repeat}: {best:.3f} s "
          f"({best / args.nodes * 1e3:.2f} ms per node); {len(converted.graph.node)} nodes out")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        deconv2sub.convert_model(model, options)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
