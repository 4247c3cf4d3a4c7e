#!/usr/bin/env python3
"""Run every small op case of ``tests/toolchain_cases.py`` through a toolchain; one line per case.

    <toolchain venv>/bin/python benchmarks/toolchains/probe_ops.py tvm|iree [--json out.json]

Prints ``case  OK|WRONG|FAIL  max_err  [reason]`` against ONNX Runtime running the same model.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))

import toolchain_cases  # noqa: E402


def main():
    """Command line: one line per op case of the toolchain (JSON with ``--json``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("toolchain")
    ap.add_argument("--only", default="")
    ap.add_argument("--json")
    args = ap.parse_args()
    tc = importlib.import_module("deconv2sub.toolchains." + args.toolchain)
    rows = []
    for name, build in toolchain_cases.all_cases().items():
        if args.only and args.only not in name:
            continue
        model, feeds = build()
        work = tempfile.mkdtemp(prefix=f"probe-{name}-")
        path = os.path.join(work, "case.onnx")
        onnx.save(model, path)
        ref = toolchain_cases.ort_outputs(model, feeds)
        row = {"case": name}
        try:
            compiled = tc.compile(path, {k: list(v.shape) for k, v in feeds.items()}, work)
            err, ok = toolchain_cases.close(compiled.run(feeds), ref)
            row.update(status="OK" if ok else "WRONG", max_err=err)
        except Exception as e:  # noqa: BLE001
            row.update(status="FAIL", reason=str(e)[:200])
        rows.append(row)
        print(f"{name:28s} {row['status']:6s} {row.get('max_err', ''):<12} {row.get('reason', '')}",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
