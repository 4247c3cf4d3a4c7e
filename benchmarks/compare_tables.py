#!/usr/bin/env python3
"""Side-by-side Markdown of several ``bench_blocks.py --json`` results (speedups, geomean, min).

    .venv/bin/python benchmarks/compare_tables.py baseline.json default.json [more.json ...]
    .venv/bin/python benchmarks/compare_tables.py before=a.log,b.log after=c.log,d.log

Column titles are the file names without ``.json``; the tables are matched by runtime. The second
form pools the per-process lines of several ``bench_blocks.py`` logs (stderr) and reports, per
block, the median over all of them (times and speedup, with the number of processes).
"""

from __future__ import annotations

import json
import os
import sys

#: a per-block line of a bench_blocks.py log: runtime, block, original ms, converted ms, speedup
LOG_LINE = r"\s+(ort|openvino|ort-cuda): (.+): ([\d.]+) ms -> ([\d.]+) ms \(([\d.]+)x\)"


def _parse_logs(paths) -> dict:
    """Runtime -> block -> [(original ms, converted ms, speedup)], one per log line."""
    import re

    rows: dict = {}
    for path in paths:
        with open(path) as f:
            lines = f.readlines()
        for line in lines:
            m = re.match(LOG_LINE, line)
            if m:
                rt, block, a, b, r = m.groups()
                rows.setdefault(rt, {}).setdefault(block, []).append((float(a), float(b), float(r)))
    return rows


def pooled(specs) -> int:
    """Prints the pooled tables of ``name=log,log`` specs (the second form of the module doc)."""
    import math
    import statistics

    runs = [(name, _parse_logs(logs.split(",")))
            for name, logs in (spec.split("=", 1) for spec in specs)]
    titles = {"ort": "ONNX Runtime CPU", "openvino": "OpenVINO CPU",
              "ort-cuda": "ONNX Runtime CUDA"}
    for rt in [r for r in titles if r in runs[0][1]]:
        print(f"\n#### {titles[rt]}, per block the median over all processes\n")
        print("| block | "
              + " | ".join(f"{n}: original → converted ms | {n}: speedup" for n, _ in runs)
              + " |")
        print("|---|" + "---:|---:|" * len(runs))
        speedups = {n: [] for n, _ in runs}
        for block in runs[0][1][rt]:
            cells = []
            for name, data in runs:
                v = data[rt][block]
                ratio = statistics.median(x[2] for x in v)
                speedups[name].append(ratio)
                before = statistics.median(x[0] for x in v)
                after = statistics.median(x[1] for x in v)
                cells.append(f"{before:.2f} → {after:.2f} | {ratio:.2f}x ({len(v)})")
            print(f"| {block} | " + " | ".join(cells) + " |")
        gm = [math.exp(sum(map(math.log, v)) / len(v)) for v in speedups.values()]
        print("| **geometric mean** | " + " | ".join(f" | **{g:.2f}x**" for g in gm) + " |")
        print("| slowest block | "
              + " | ".join(f" | {min(v):.2f}x" for v in speedups.values()) + " |")
    return 0


def _load(path: str):
    """A ``bench_blocks.py --json`` file's tables."""
    with open(path) as f:
        return json.load(f)


def main(paths) -> int:
    """Prints the side-by-side tables of ``paths`` (or the pooled ones of ``name=logs`` specs)."""
    if paths and all("=" in p for p in paths):
        return pooled(paths)
    runs = [(os.path.basename(p)[:-5] if p.endswith(".json") else os.path.basename(p), _load(p))
            for p in paths]
    runtimes = []
    for _, tables in runs:
        for t in tables:
            if t["runtime"] not in runtimes:
                runtimes.append(t["runtime"])
    for rt in runtimes:
        cols = [(name, next((t for t in tables if t["runtime"] == rt), None))
                for name, tables in runs]
        cols = [(n, t) for n, t in cols if t is not None]
        print(f"\n#### {cols[0][1]['label']}\n")
        print("| block | " + " | ".join(n for n, _ in cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for i, row in enumerate(cols[0][1]["rows"]):
            cells = []
            for _, t in cols:
                r = next((x for x in t["rows"] if x["block"] == row["block"]), None)
                cells.append("" if r is None else f"{r['speedup']:.2f}x")
            print(f"| {row['block']} | " + " | ".join(cells) + " |")
        print("| **geometric mean** | "
              + " | ".join(f"**{t['geomean']:.2f}x**" for _, t in cols) + " |")
        print("| slowest block | " + " | ".join(f"{t['min']:.2f}x" for _, t in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
