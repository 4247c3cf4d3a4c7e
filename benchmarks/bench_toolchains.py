#!/usr/bin/env python3
"""The proof on real toolchains: correctness against ONNX Runtime, and latency.

Every bundled sample and benchmark block, converted with the ``portable`` default and with the
toolchain's own profile, goes through the toolchain's own converter, runs, and is compared with
ONNX Runtime running the ORIGINAL; original -> converted latency on the toolchain, interleaved in
one process, with geometric means.

    .venv/bin/python benchmarks/bench_toolchains.py [--toolchains ncnn,mnn,tflite,tvm,iree,rknn]
        [--models samples,blocks] [--targets portable,own] [--only NAME,...] [--runs 7]
        [--json out.json] [--markdown out.md]

``--targets`` items: ``portable``, ``own`` (each toolchain its own profile), a profile name
(``mnn``, ``onnxruntime``, a TOML path), or a form given as ConvertOptions fields joined by ``+``
(``strategy=depth_to_space+order=DCR``, ``target=mnn+fold_crop=always``): the way to try several
forms of the same model on one toolchain side by side.

Toolchains must be installed (``.ci/toolchains/NAME.sh VENV``; tflite/tvm/iree may live in their
own venvs named by ``DECONV2SUB_<NAME>_PYTHON``, as rknn must); unavailable ones are listed and
skipped. Static shapes: batch 1 and the sizes below for symbolic dims. A cell is "ok" when every
element is within 1e-3 abs + 1e-3 rel of ONNX Runtime on the original (the tolerance of
``--runtime <toolchain>``; a toolchain module's ``TOLERANCES`` where it has them: RKNN computes in
float16).
Latency: median of ``--runs`` interleaved runs (original, converted, ...) after one warm-up each,
each run timed inside the toolchain's process (``Runner.timed_run``: in its worker, for a toolchain
in its own venv, so the arrays' trip there and back is not counted); speedup = original /
converted (> 1: the rewrite is faster there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import deconv2sub  # noqa: E402
from deconv2sub import ConvertOptions  # noqa: E402
from deconv2sub.errors import Deconv2SubError  # noqa: E402
from deconv2sub.runtime.runners import TOOLCHAINS, create_runner  # noqa: E402
from deconv2sub.toolchains import tolerances  # noqa: E402

SAMPLE_SHAPES = {
    "seed_example": {"x": (1, 1, 4, 4)},
    "dcgan_generator": {"z": (1, 16, 1, 1)},
    "autoencoder": {"x": (1, 1, 28, 28)},
    "unet_decoder": {"x": (1, 3, 32, 32)},
    "enet_decoder": {"x": (1, 32, 8, 8)},
    "hifigan_upsampler": {"mel": (1, 16, 20)},
    "unet3d_upblock": {"x": (1, 16, 4, 4, 4), "skip": (1, 8, 8, 8, 8)},
    "grouped_upsampler": {"x": (1, 8, 8, 8)},
}
ATOL = RTOL = 1e-3


def models(kinds):
    """(name, ONNX model, feeds) for the samples and/or the benchmark blocks."""
    rng = np.random.default_rng(0)
    if "samples" in kinds:
        for name, shapes in SAMPLE_SHAPES.items():
            m = onnx.load(os.path.join(ROOT, "samples", name + ".onnx"))
            yield name, m, {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    if "blocks" in kinds:
        from bench_blocks import all_blocks, build_block

        for spec in all_blocks():
            m = build_block(spec)
            shape = (1, spec.c_in, *spec.spatial)
            yield spec.label, m, {"X": rng.standard_normal(shape).astype(np.float32)}


def convert_options(item: str, toolchain: str) -> ConvertOptions:
    """The ConvertOptions of one ``--targets`` item for ``toolchain`` (see the module docstring)."""
    if item == "own":
        return ConvertOptions(target=toolchain)
    if "=" not in item:
        return ConvertOptions(target=item)
    fields = {}
    for part in item.split("+"):
        key, _, value = part.partition("=")
        fields[key] = {"true": True, "false": False}.get(value, value)
    return ConvertOptions(**fields)


def ort_reference(model, feeds):
    """Outputs of ``model`` on ``feeds`` in ONNX Runtime CPU: the reference for every toolchain."""
    r = create_runner(model, runtime="onnxruntime", provider="cpu", what="the original model")
    return r.run(feeds)


def close(got, ref, rtol=RTOL, atol=ATOL):
    """(max abs error, whether every output of ``got`` is within ``atol + rtol * |ref|``)."""
    err, ok = 0.0, True
    for k, v in ref.items():
        g = got.get(k)
        if g is None or g.shape != v.shape:
            return float("inf"), False
        d = np.abs(g.astype(np.float64) - v)
        err = max(err, float(d.max()) if d.size else 0.0)
        ok &= bool(np.all(d <= atol + rtol * np.abs(v)))
    return err, ok


#: compiled models of the current model, keyed by (toolchain, sha256 of the ONNX bytes, feed
#: shapes): the original is compiled once for both targets, and an own-profile output identical to
#: the portable one is not compiled again (onnx2tf takes minutes per block on 2 cores)
_COMPILED: dict = {}


def _compiled(toolchain, model, what, feeds, ref):
    """(runner or None, result) of ``model`` on ``toolchain``, compiled once per model bytes."""
    import hashlib

    shapes = tuple(sorted((k, tuple(v.shape)) for k, v in feeds.items()))
    key = (toolchain, hashlib.sha256(model.SerializeToString()).hexdigest(), shapes)
    if key not in _COMPILED:
        try:
            runner = create_runner(
                model, runtime=toolchain, provider="cpu", what=f"the {what} model"
            )
            out = runner.run(feeds)
        except Deconv2SubError as e:
            _COMPILED[key] = (None, {"ok": False, "error": str(e).splitlines()[0][:200]})
        else:
            err, ok = close(out, ref, *tolerances(toolchain, (RTOL, ATOL)))
            result = {"ok": ok, "max_err": err}
            notes = runner.build_notes()
            if notes:  # e.g. RKNN's layers placed on the CPU
                result["notes"] = notes
            _COMPILED[key] = (runner, result)
    runner, result = _COMPILED[key]
    return runner, dict(result)


def measure(toolchain, name, original, converted, feeds, ref, runs):
    """Result row of ``original`` and ``converted`` on ``toolchain``: checked, then timed."""
    row = {"toolchain": toolchain, "model": name}
    runners = {}
    for what, m in (("original", original), ("converted", converted)):
        runner, row[what] = _compiled(toolchain, m, what, feeds, ref)
        if runner is not None:
            runners[what] = runner
    if len(runners) == 2 and row["converted"]["ok"]:
        times = {"original": [], "converted": []}
        for _ in range(runs):
            for what in ("original", "converted"):
                times[what].append(runners[what].timed_run(feeds))
        for what in times:
            row[what]["ms"] = 1e3 * statistics.median(times[what])
        row["speedup"] = row["original"]["ms"] / row["converted"]["ms"]
    return row


def main(argv=None) -> int:
    """Run the proof on the toolchains and models of ``argv``; print rows and tables; return 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toolchains", default=",".join(TOOLCHAINS))
    p.add_argument("--models", default="samples,blocks")
    p.add_argument(
        "--targets", default="portable,own", help="portable and/or own (the toolchain's profile)"
    )
    p.add_argument("--runs", type=int, default=7)
    p.add_argument(
        "--only", default="", help="comma-separated model names (samples or block labels)"
    )
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)
    toolchains, rows = [t for t in args.toolchains.split(",") if t], []
    import importlib

    for tc in list(toolchains):
        reason = importlib.import_module(f"deconv2sub.toolchains.{tc}").unavailable_reason()
        if reason:
            print(f"{tc}: unavailable: {reason}", flush=True)
            toolchains.remove(tc)
    only = [n for n in args.only.split(",") if n]
    for name, model, feeds in models(args.models.split(",")):
        if only and name not in only:
            continue
        _COMPILED.clear()
        ref = ort_reference(model, feeds)
        for target_kind in args.targets.split(","):
            for tc in toolchains:
                options = convert_options(target_kind, tc)
                converted, report = deconv2sub.convert_model(model, options)
                row = measure(tc, name, model, converted, feeds, ref, args.runs)
                row["target"] = tc if target_kind == "own" else target_kind
                row["rewritten"] = f"{len(report.rewritten)}/{len(report.nodes)}"
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    text = markdown(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


def _cell(row):
    c, o = row["converted"], row["original"]
    if not c.get("ok"):
        return "**wrong**" if "max_err" in c else f"fails: {c.get('error', '')[:60]}"
    if "speedup" in row:
        return f"ok {o['ms']:.3g}->{c['ms']:.3g} ms ({row['speedup']:.2f}x)"
    orig = "original fails" if not o.get("ok") else ""
    return f"ok ({orig})" if orig else "ok"


def _kind(row) -> str:
    """The table a row belongs to: "portable", "own" (target == toolchain) or the form's name."""
    if row["target"] == "portable":
        return "portable"
    return "own" if row["target"] == row["toolchain"] else row["target"]


def markdown(rows):
    """Markdown tables of ``rows``, one per kind of target, each with a geomean summary row."""
    out = []
    kinds = list(dict.fromkeys(_kind(r) for r in rows))
    for kind in kinds:
        sel = [r for r in rows if _kind(r) == kind]
        tcs = sorted({r["toolchain"] for r in sel}, key=lambda t: TOOLCHAINS.index(t))
        models_ = list(dict.fromkeys(r["model"] for r in sel))
        title = {"portable": "portable (default)", "own": "each toolchain its own profile"}.get(
            kind, f"form {kind}")
        out.append(f"\n### {title}\n")
        out.append("| model | " + " | ".join(tcs) + " |")
        out.append("|---|" + "---|" * len(tcs))
        for m in models_:
            cells = [
                next((_cell(r) for r in sel if r["model"] == m and r["toolchain"] == t), "")
                for t in tcs
            ]
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        geo = []
        for t in tcs:
            sp = [r["speedup"] for r in sel if r["toolchain"] == t and "speedup" in r]
            ok = sum(1 for r in sel if r["toolchain"] == t and r["converted"].get("ok"))
            n = sum(1 for r in sel if r["toolchain"] == t)
            g = math.exp(sum(map(math.log, sp)) / len(sp)) if sp else float("nan")
            geo.append(f"{ok}/{n} ok; geomean {g:.2f}x, min {min(sp) if sp else float('nan'):.2f}x")
        out.append("| **summary** | " + " | ".join(geo) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
