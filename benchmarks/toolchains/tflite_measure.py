#!/usr/bin/env python3
"""Measure the deconv2sub rewrites on LiteRT (onnx2tf -> .tflite -> Interpreter, XNNPACK, 2 threads).

    DECONV2SUB_TFLITE_PYTHON=/tmp/tc-tflite/bin/python PYTHONPATH=. \\
        .venv/bin/python benchmarks/toolchains/tflite_measure.py [--samples] [--blocks] [--out F.jsonl]

For each model (the bundled samples, the benchmark blocks) and each form (the original, and the
CLI's conversions a-e below), the form is converted by onnx2tf and run in LiteRT on random inputs;
its outputs are compared with ONNX Runtime running the ORIGINAL model (tolerance 1e-3 abs + 1e-3
rel, elementwise), and the original and converted .tflite are timed interleaved in one process.
One JSON line per (model, form) goes to ``--out``; ``--table`` prints the markdown table of a file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from deconv2sub.toolchains import ToolchainError, tflite  # noqa: E402

FORMS = {
    "a CRD": ["--strategy", "depth_to_space", "--order", "CRD"],
    "b DCR": ["--strategy", "depth_to_space", "--order", "DCR"],
    "c reshape": ["--strategy", "depth_to_space", "--shuffle", "reshape"],
    "d default": ["--target", "onnxruntime"],
    "e transpose": ["--strategy", "transpose"],
}

SAMPLES = {
    "seed_example": {"x": [1, 1, 4, 4]},
    "dcgan_generator": {"z": [1, 16, 1, 1]},
    "autoencoder": {"x": [1, 1, 28, 28]},
    "unet_decoder": {"x": [1, 3, 64, 48]},
    "enet_decoder": {"x": [1, 32, 12, 16]},
    "hifigan_upsampler": {"mel": [1, 16, 40]},
    "unet3d_upblock": {"x": [1, 16, 4, 6, 5], "skip": [1, 8, 8, 12, 10]},
    "grouped_upsampler": {"x": [1, 8, 12, 16]},
}
ATOL = RTOL = 1e-3


def cli_convert(src: str, dst: str, shapes: Dict, args: List[str]) -> Optional[str]:
    """The project's CLI; None on success, else its last stderr line."""
    cmd = [sys.executable, "-m", "deconv2sub.cli", "convert", src, "-o", dst, "--force"]
    for name, shape in shapes.items():
        cmd += ["--input-shape", f"{name}:{','.join(map(str, shape))}"]
    res = subprocess.run(cmd + args, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    if res.returncode != 0:
        return (res.stderr.strip().splitlines() or ["exit %d" % res.returncode])[-1]
    return None


def onnx_ops(path: str) -> str:
    """Op counts of an ONNX graph, e.g. 'Conv:3 DepthToSpace:2'."""
    counts: Dict[str, int] = {}
    for node in onnx.load(path).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def tfl_ops(ops: List[str]) -> str:
    counts: Dict[str, int] = {}
    for op in ops:
        counts[op] = counts.get(op, 0) + 1
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


def compare(ref: List[np.ndarray], out: Dict[str, np.ndarray], names: List[str]) -> Dict:
    errs, ok = [], True
    for name, r in zip(names, ref):
        o = out[name]
        if o.shape != r.shape:
            return {"ok": False, "max_err": None, "why": f"shape {o.shape} != {r.shape}"}
        diff = np.abs(o.astype(np.float64) - r)
        errs.append(float(diff.max()))
        ok = ok and bool(np.all(diff <= ATOL + RTOL * np.abs(r)))
    return {"ok": ok, "max_err": max(errs)}


def measure_model(name: str, src: str, shapes: Dict, tmp: str, out, samples: int) -> None:
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    ref = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    orig_c = None
    for form, args in [("original", None)] + list(FORMS.items()):
        row = {"model": name, "form": form}
        path = src
        if args is not None:
            path = os.path.join(tmp, f"{name}_{form.split()[0]}.onnx")
            err = cli_convert(src, path, shapes, args)
            if err:
                row.update(deconv2sub_error=err)
                out.write(json.dumps(row) + "\n")
                out.flush()
                continue
        row["onnx_ops"] = onnx_ops(path)
        t0 = time.time()
        try:
            comp = tflite.compile(path, shapes, os.path.join(tmp, f"w_{name}_{form.split()[0]}"))
        except ToolchainError as exc:
            row.update(converts=False, error=str(exc), convert_s=round(time.time() - t0, 1))
            out.write(json.dumps(row) + "\n")
            out.flush()
            continue
        row.update(converts=True, convert_s=round(time.time() - t0, 1), tfl_ops=tfl_ops(comp.ops),
                   partitions=comp.partitions, outside_xnnpack=comp.outside_xnnpack,
                   ambiguous=comp.ambiguous_outputs, input_perm=comp.input_perm)
        try:
            row.update(compare(ref, comp.run(feeds), comp.output_names), runs=True)
        except ToolchainError as exc:
            row.update(runs=False, error=str(exc))
        if form == "original":
            orig_c = comp
        if row.get("runs") and orig_c is not None:
            try:
                if comp is orig_c:
                    ms = tflite.benchmark([comp], [feeds], samples=samples)
                    row["ms"] = ms[0]
                else:
                    ms = tflite.benchmark([orig_c, comp], [feeds, feeds], samples=samples)
                    row.update(orig_ms=ms[0], ms=ms[1])
            except ToolchainError as exc:
                row["bench_error"] = str(exc)
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(name, form, {k: row.get(k) for k in ("converts", "ok", "max_err", "ms", "orig_ms")},
              flush=True)


def with_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The block with its outputs' static shapes filled in (from one ORT run): build_block leaves
    them out, and the CLI's loader then refuses the file ("Field 'shape' of 'type' is required").
    """
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
             for i in sess.get_inputs()}
    for out, arr in zip(model.graph.output, sess.run(None, feeds)):
        dims = out.type.tensor_type.shape.dim
        del dims[:]
        for size in arr.shape:
            dims.add().dim_value = int(size)
    return model


def block_models(tmp: str, which: str) -> List:
    import bench_blocks

    models = []
    for spec in bench_blocks.all_blocks():
        if which == "plain" and spec.bn_relu:
            continue
        model = with_output_shapes(bench_blocks.build_block(spec))
        name = spec.name + (" +BN+ReLU" if spec.bn_relu else "")
        path = os.path.join(tmp, "block_" + "".join(c if c.isalnum() else "_" for c in name)
                            + ".onnx")
        onnx.save(model, path)
        shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
                  for i in model.graph.input}
        models.append((name, path, shapes))
    return models


def table(path: str) -> str:
    """Markdown table of a results file."""
    rows = [json.loads(line) for line in open(path)]
    lines = ["| model | form | converts | runs | max err | ok | orig ms | ms | speedup | TFLite ops |"
             " XNNPACK partitions / outside |", "|" + "---|" * 11]
    for r in rows:
        if "deconv2sub_error" in r:
            lines.append(f"| {r['model']} | {r['form']} | (deconv2sub: {r['deconv2sub_error'][:60]}) "
                         "| | | | | | | | |")
            continue
        if not r.get("converts"):
            lines.append(f"| {r['model']} | {r['form']} | no: {r.get('error', '')[:90]} | | | | | | | | |")
            continue
        err = "" if r.get("max_err") is None else f"{r['max_err']:.2g}"
        sp = f"{r['orig_ms'] / r['ms']:.2f}x" if r.get("orig_ms") and r.get("ms") else ""
        orig = f"{r['orig_ms']:.3f}" if r.get("orig_ms") else ""
        ms = f"{r['ms']:.3f}" if r.get("ms") else ""
        outside = ",".join(r.get("outside_xnnpack") or []) or "-"
        lines.append(f"| {r['model']} | {r['form']} | yes | {'yes' if r.get('runs') else 'no'} | "
                     f"{err} | {'**yes**' if r.get('ok') else '**NO**'} | {orig} | {ms} | {sp} | "
                     f"{r.get('tfl_ops', '')} | {r.get('partitions')} / {outside} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", action="store_true", help="the bundled samples")
    ap.add_argument("--blocks", choices=["plain", "all"], help="the benchmark blocks")
    ap.add_argument("--only", help="only models whose name contains this")
    ap.add_argument("--out", default="tflite_results.jsonl")
    ap.add_argument("--bench-samples", type=int, default=30)
    ap.add_argument("--table", metavar="JSONL", help="print the markdown table of a results file")
    args = ap.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    reason = tflite.unavailable_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 3
    tmp = tempfile.mkdtemp(prefix="tfl_measure_")
    models = []
    if args.samples:
        models += [(n, os.path.join(ROOT, "samples", n + ".onnx"), s) for n, s in SAMPLES.items()]
    if args.blocks:
        models += block_models(tmp, args.blocks)
    with open(args.out, "a") as out:
        for name, path, shapes in models:
            if args.only and args.only not in name:
                continue
            measure_model(name, path, shapes, tmp, out, args.bench_samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
