#!/usr/bin/env python3
r"""RKNN builder's own cycle estimates and CPU placements, original vs converted, per model.

The toolkit's simulator does not time the NPU (its latency is the x86 simulation's), but the builder
prints a "Network Layer Information Table" with an estimated ``Cycles(DDR/NPU/Total)`` per layer and
each layer's target (NPU or CPU). This script builds (no inference) every bundled sample and
benchmark block, original and converted with ``--target portable`` and ``--target rknn``, and prints
the summed Total estimate and the layers placed on the CPU. The estimate is the builder's static
model, not a measurement: CPU layers count 0, and so does the NPU <-> CPU traffic around them.

    DECONV2SUB_RKNN_PYTHON=/tmp/tc-rknn/bin/python \\
        .venv/bin/python benchmarks/toolchains/rknn_cycles.py [--markdown out.md]

(or run it with the RKNN venv's interpreter and ``PYTHONPATH=.`` directly).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import deconv2sub  # noqa: E402
from deconv2sub import ConvertOptions  # noqa: E402
from deconv2sub.toolchains import ToolchainError, rknn  # noqa: E402


def _models():
    from bench_blocks import all_blocks, build_block
    from bench_toolchains import SAMPLE_SHAPES

    for name, shapes in SAMPLE_SHAPES.items():
        yield name, onnx.load(os.path.join(ROOT, "samples", name + ".onnx")), shapes
    for spec in all_blocks():
        yield spec.label, build_block(spec), {"X": (1, spec.c_in, *spec.spatial)}


def _build(model, shapes, workdir):
    """(estimated cycles, CPU layers) of one model, or the builder's one-line failure."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "model.onnx")
    onnx.save(model, path)
    try:
        compiled = rknn.compile(path, {k: list(v) for k, v in shapes.items()}, workdir)
    except ToolchainError as err:
        return None, str(err)
    with open(os.path.join(workdir, "rknn_build.log"), errors="replace") as f:
        cycles = rknn.estimated_cycles(f.read())
    cpu = [n[len("on CPU: "):].split()[0] for n in compiled.notes if n.startswith("on CPU:")]
    compiled.close()
    return cycles, ", ".join(cpu) or "-"


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)
    reason = rknn.unavailable_reason()
    if reason:
        sys.exit(f"rknn unavailable: {reason}")
    lines = ["| model | original cycles (CPU layers) | portable cycles (CPU layers) | ratio | "
             "rknn profile cycles (CPU layers) |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="rknn-cycles-") as tmp:
        for i, (name, model, shapes) in enumerate(_models()):
            cells = {}
            for target in ("original", "portable", "rknn"):
                m = model if target == "original" else deconv2sub.convert_model(
                    model, ConvertOptions(target=target))[0]
                cells[target] = _build(m, shapes, os.path.join(tmp, f"{i}_{target}"))
            o, c = cells["original"][0], cells["portable"][0]
            ratio = f"{o / c:.2f}x" if o and c else ""
            row = (f"| {name} | " + " | ".join(
                f"{cyc} ({cpu})" if cyc is not None else f"fails: {cpu[:60]}"
                for cyc, cpu in (cells["original"], cells["portable"]))
                   + f" | {ratio} | {cells['rknn'][0]} ({cells['rknn'][1]}) |")
            lines.append(row)
            print(row, flush=True)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
