"""Latency of original vs rewritten models on a toolchain, both loaded in one process and timed
interleaved (rounds x runs after a warm-up), 2 threads: median and minimum in ms.

    python benchmarks/toolchains/timing.py ncnn --forms a,d      # forms made by measure.py

Uses the form files that measure.py left in its folder (default /tmp/d2s-tc-forms).
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from measure import ROOT, SAMPLE_SHAPES, block_models, feeds_for  # noqa: E402


def timings(fn, feeds, runs: int) -> list:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(feeds)
        out.append(1e3 * (time.perf_counter() - t))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("toolchain")
    p.add_argument("--forms", default="a,d", help="form letters (measure.py's a..e)")
    p.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "d2s-tc-forms"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--json")
    args = p.parse_args()
    tc = importlib.import_module(f"deconv2sub.toolchains.{args.toolchain}")
    from deconv2sub.toolchains import ToolchainError

    models = {n: (os.path.join(ROOT, "samples", n + ".onnx"), s) for n, s in SAMPLE_SHAPES.items()}
    models.update(block_models(args.folder, small=True))
    rows = {}
    with tempfile.TemporaryDirectory() as wd:
        for name, (src, shapes) in models.items():
            stem = os.path.join(args.folder, os.path.basename(src)[:-5])
            feeds = feeds_for(shapes)
            try:
                base = tc.compile(src, shapes, os.path.join(wd, name + "o"))
                base.run(feeds)
            except (ToolchainError, RuntimeError):
                continue
            for letter in args.forms.split(","):
                path = f"{stem}.{letter}.onnx"
                if not os.path.exists(path):
                    continue
                try:
                    comp = tc.compile(path, shapes, os.path.join(wd, name + letter))
                    comp.run(feeds)
                except (ToolchainError, RuntimeError):
                    continue
                for fn in (base.run, comp.run):
                    timings(fn, feeds, 3)  # warm-up
                tb, tf = [], []
                for _ in range(args.rounds):
                    tb += timings(base.run, feeds, args.runs)
                    tf += timings(comp.run, feeds, args.runs)
                row = {"orig_med": statistics.median(tb), "orig_min": min(tb),
                       "form_med": statistics.median(tf), "form_min": min(tf)}
                rows[f"{name} {letter}"] = row
                print(f"| {name} | {letter} | {row['orig_med']:.3g} / {row['orig_min']:.3g} | "
                      f"{row['form_med']:.3g} / {row['form_min']:.3g} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
