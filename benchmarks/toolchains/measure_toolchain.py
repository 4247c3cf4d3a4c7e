#!/usr/bin/env python3
"""Measure a deployment toolchain on the samples (and blocks) in every deconv2sub form.

    <toolchain venv>/bin/python benchmarks/toolchains/measure_toolchain.py tvm|iree \
        --conv-dir DIR [--samples a,b] [--runs 15] [--symbolic] [--json out.json]

Run it in the toolchain's own interpreter (the toolchain in-process, as deployed). ``DIR`` holds the
converted models ``<sample>__<form>.onnx`` made with the project's CLI (``convert_samples.sh``).
For each (model, form): compile time, whether it compiles and runs, the max abs error against ONNX
Runtime running the ORIGINAL model (ORT_DISABLE_ALL), pass at 1e-3 abs + 1e-3 rel, and the latency
of the original and the converted model on the toolchain (median of ``--runs`` samples, each the
mean of back-to-back runs >= 5 ms, the two models interleaved in one process after a warm-up).
``--blocks 0,4`` adds benchmark blocks (``benchmarks/bench_blocks.py``), built and converted
into every form here (``--samples ''`` for blocks only). ``--symbolic`` (TVM only): also import each converted model with its symbolic dims kept
(``from_onnx`` without ``shape_dict``) and run it at two shapes.
Threads: set ``TVM_NUM_THREADS=2`` / ``DECONV2SUB_IREE_THREADS=2`` in the environment.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

#: samples whose IREE dispatches are listed (an extra compile to the flow phase each)
FLOW_FOR = set()
FORMS = ["original", "crd", "dcr", "reshape", "default", "transpose"]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
#: static shapes per sample (first shape); a second shape for the symbolic-dims check
SHAPES = {
    "autoencoder": [{"x": [1, 1, 28, 28]}, {"x": [2, 1, 28, 28]}],
    "dcgan_generator": [{"z": [1, 16, 1, 1]}, {"z": [3, 16, 1, 1]}],
    "enet_decoder": [{"x": [1, 32, 16, 16]}, {"x": [2, 32, 8, 12]}],
    "grouped_upsampler": [{"x": [1, 8, 32, 32]}, {"x": [2, 8, 12, 20]}],
    "hifigan_upsampler": [{"mel": [1, 16, 64]}, {"mel": [2, 16, 40]}],
    "seed_example": [{"x": [1, 1, 4, 4]}, {"x": [1, 1, 4, 4]}],
    "unet3d_upblock": [{"x": [1, 16, 4, 4, 4], "skip": [1, 8, 8, 8, 8]},
                       {"x": [2, 16, 3, 5, 4], "skip": [2, 8, 6, 10, 8]}],
    "unet_decoder": [{"x": [1, 3, 64, 64]}, {"x": [2, 3, 48, 32]}],
}


def feeds_for(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}


def ort_reference(path, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def max_err(outs, ref):
    """(max abs error, passes 1e-3 abs + 1e-3 rel) over all outputs."""
    err, ok = 0.0, True
    for name, r in ref.items():
        o = outs[name]
        if o.shape != r.shape:
            return float("inf"), False
        d = np.abs(o.astype(np.float64) - r)
        err = max(err, float(d.max()))
        ok = ok and bool(np.all(d <= 1e-3 + 1e-3 * np.abs(r)))
    return err, ok


def _sample(run, feeds, min_s=0.005):
    n, t0 = 0, time.perf_counter()
    while True:
        run(feeds)
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return dt / n


def time_pair(run_a, run_b, feeds, samples):
    """Median seconds of a and b, interleaved a b b a ..., after a warm-up of each."""
    for _ in range(3):
        run_a(feeds)
        run_b(feeds)
    ta, tb = [], []
    for i in range(samples):
        order = (run_a, run_b) if i % 2 == 0 else (run_b, run_a)
        for fn in order:
            (ta if fn is run_a else tb).append(_sample(fn, feeds))
    return statistics.median(ta), statistics.median(tb)


def op_profile(tc_name, compiled):
    """What the toolchain produced: TVM's Relax op histogram, IREE's dispatches."""
    import collections
    import re

    if tc_name == "tvm":
        text = open(compiled.artifacts[0]).read()
        ops = collections.Counter(re.findall(r"\bR\.((?:nn\.|image\.)?[a-z_0-9]+)\(", text))
        for k in ("dataflow", "output", "const", "shape", "prim_value", "Tensor", "tuple"):
            ops.pop(k, None)
        return dict(sorted(ops.items()))
    return None


def iree_dispatches(mlir, workdir):
    """IREE dispatch kinds (names from the flow phase) and their count."""
    import collections
    import re
    import subprocess

    from deconv2sub.toolchains import iree

    flow = os.path.join(workdir, "model.flow.mlir")
    subprocess.run([iree._tool("iree-compile"), mlir, *iree.COMPILE_FLAGS, "--compile-to=flow",
                    "-o", flow], capture_output=True, check=True)
    text = open(flow).read()
    names = re.findall(r"flow\.executable\.export public @(\S+)", text)
    kinds = collections.Counter()
    for n in names:
        m = re.match(r".*_dispatch_\d+_(.*)", n)
        base = m.group(1) if m else n
        kinds[re.sub(r"_[0-9x]+(_f32|_i64|_i32)?$", "", base).split("_f32")[0]] += 1
    copies = len(re.findall(r"flow\.tensor\.(?:update|slice|reshape|transfer|splat|clone)", text))
    return {"dispatches": len(names), "kinds": dict(kinds), "flow_tensor_ops": copies}


#: model name -> original ONNX path (the samples; --blocks adds the benchmark blocks)
ORIGINALS = {s: os.path.join(ROOT, "samples", s + ".onnx") for s in SHAPES}
#: ConvertOptions per form, as the CLI sets them (for --blocks, converted here)
FORM_OPTIONS = {
    "crd": dict(strategy="depth_to_space", order="CRD"),
    "dcr": dict(strategy="depth_to_space", order="DCR"),
    "reshape": dict(strategy="depth_to_space", shuffle="reshape"),
    "default": dict(target="onnxruntime"),
    "transpose": dict(strategy="transpose"),
}


def prepare_blocks(indices, conv_dir):
    """Build benchmark blocks (bench_blocks.all_blocks()[i]) and convert them into every form."""
    import onnx

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import bench_blocks

    import deconv2sub

    names = []
    for i in indices:
        spec = bench_blocks.all_blocks()[i]
        name = "block%d_" % i + "".join(c if c.isalnum() else "_" for c in spec.label)
        model = bench_blocks.build_block(spec)
        ORIGINALS[name] = os.path.join(conv_dir, name + ".onnx")
        onnx.save(model, ORIGINALS[name])
        SHAPES[name] = [{"X": [1, spec.c_in, *spec.spatial]}]
        for form, opts in FORM_OPTIONS.items():
            conv, _ = deconv2sub.convert_model(model, deconv2sub.ConvertOptions(**opts))
            onnx.save(conv, os.path.join(conv_dir, f"{name}__{form}.onnx"))
        names.append(name)
    return names


def measure_one(tc, tc_name, sample, form, conv_dir, runs, orig_compiled, do_time):
    shapes = SHAPES[sample][0]
    path = (ORIGINALS[sample] if form == "original"
            else os.path.join(conv_dir, f"{sample}__{form}.onnx"))
    row = {"sample": sample, "form": form}
    feeds = feeds_for(shapes)
    ref = ort_reference(ORIGINALS[sample], feeds)
    work = tempfile.mkdtemp(prefix=f"{tc_name}-{sample}-{form}-")
    t0 = time.perf_counter()
    try:
        compiled = tc.compile(path, shapes, work)
    except Exception as err:  # noqa: BLE001
        row.update(compiles=False, error=str(err)[:300])
        return row, None
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    try:
        outs = compiled.run(feeds)
    except Exception as err:  # noqa: BLE001
        row.update(compiles=True, runs=False, error=str(err)[:300])
        return row, compiled
    err, ok = max_err(outs, ref)
    row.update(compiles=True, runs=True, max_err=err, ok=ok)
    row["ops"] = op_profile(tc_name, compiled)
    if tc_name == "iree" and sample in FLOW_FOR:
        try:
            row["ops"] = iree_dispatches(compiled.artifacts[1], work)
        except Exception as e:  # noqa: BLE001
            row["ops"] = str(e)[:100]
    if do_time and orig_compiled is not None and form != "original":
        t_orig, t_conv = time_pair(orig_compiled.run, compiled.run, feeds, runs)
        row.update(orig_ms=t_orig * 1e3, conv_ms=t_conv * 1e3, speedup=t_orig / t_conv)
    return row, compiled


def symbolic_check(sample, form, conv_dir):
    """TVM: import with symbolic dims kept, build, run at both shapes against ORT."""
    from deconv2sub.toolchains import tvm as tvm_tc

    path = (os.path.join(ROOT, "samples", sample + ".onnx") if form == "original"
            else os.path.join(conv_dir, f"{sample}__{form}.onnx"))
    row = {"sample": sample, "form": form, "symbolic": True}
    t0 = time.perf_counter()
    try:
        compiled = tvm_tc.compile_here(path, None, tempfile.mkdtemp(prefix="tvm-sym-"))
    except Exception as err:  # noqa: BLE001
        row.update(compiles=False, error=str(err)[:300])
        return row
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    errs, oks = [], []
    for shapes in SHAPES[sample]:
        feeds = feeds_for(shapes, 1)
        ref = ort_reference(os.path.join(ROOT, "samples", sample + ".onnx"), feeds)
        try:
            e, ok = max_err(compiled.run(feeds), ref)
        except Exception as err:  # noqa: BLE001
            row.update(compiles=True, runs=False, error=str(err).strip().splitlines()[-1][:300])
            return row
        errs.append(e)
        oks.append(ok)
    row.update(compiles=True, runs=True, max_err=max(errs), ok=all(oks))
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("toolchain")
    ap.add_argument("--conv-dir", required=True)
    ap.add_argument("--samples", default=",".join(SHAPES))
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--no-time", action="store_true")
    ap.add_argument("--symbolic", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--blocks", default="", help="indices into bench_blocks.all_blocks()")
    ap.add_argument("--flow-for", default="", help="IREE: samples whose dispatches to list")
    args = ap.parse_args()
    FLOW_FOR.update(s for s in args.flow_for.split(",") if s)
    samples = args.samples.split(",") if args.samples else []
    if args.blocks:
        samples += prepare_blocks([int(i) for i in args.blocks.split(",")], args.conv_dir)
    tc = importlib.import_module("deconv2sub.toolchains." + args.toolchain)
    reason = tc.unavailable_reason()
    if reason:
        sys.exit(reason)
    rows = []
    for sample in samples:
        orig = None
        for form in args.forms.split(","):
            row, compiled = measure_one(tc, args.toolchain, sample, form, args.conv_dir, args.runs,
                                        orig, not args.no_time)
            if form == "original" and row.get("runs"):
                orig = compiled
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.symbolic:
                srow = symbolic_check(sample, form, args.conv_dir)
                rows.append(srow)
                print(json.dumps(srow), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
