#!/usr/bin/env python3
"""Side-by-side Markdown of several ``bench_blocks.py --json`` results (speedup per block, geomean, min).

    .venv/bin/python benchmarks/compare_tables.py baseline.json default.json [more.json ...]

Column titles are the file names without ``.json``; the tables are matched by runtime.
"""

from __future__ import annotations

import json
import os
import sys


def main(paths) -> int:
    runs = [(os.path.basename(p)[:-5] if p.endswith(".json") else os.path.basename(p), json.load(open(p)))
            for p in paths]
    runtimes = []
    for _, tables in runs:
        for t in tables:
            if t["runtime"] not in runtimes:
                runtimes.append(t["runtime"])
    for rt in runtimes:
        cols = [(name, next((t for t in tables if t["runtime"] == rt), None)) for name, tables in runs]
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
        print("| **geometric mean** | " + " | ".join(f"**{t['geomean']:.2f}x**" for _, t in cols) + " |")
        print("| slowest block | " + " | ".join(f"{t['min']:.2f}x" for _, t in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
