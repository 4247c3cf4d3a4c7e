#!/usr/bin/env python3
"""Fingerprints of the emitted graphs: a refactoring check that the rewrite is byte-identical.

    python benchmarks/emission_fingerprints.py OUT.json [--compare BASELINE.json]

Converts every sample (``samples/*.onnx``) and every benchmark block
(:func:`bench_blocks.all_blocks` / :func:`bench_blocks.build_block`) with every fixed strategy plus
``"default"`` under a set of targets, and stores per case the sha256 of the converted model's
``SerializeToString()`` and of the per-node report fields that say what was emitted and why (status,
reason, strategy, strategy reason, shuffle, crop). A case that raises stores the exception's type
and message. With ``--compare`` the run is checked against an earlier one: exit 1 and the differing
cases listed when any model or report fingerprint differs. Nothing is verified numerically here:
the test suite does that; this only proves that a change of code left the output alone.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
from typing import Dict, Iterator, Tuple

import onnx

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_blocks  # noqa: E402

import deconv2sub  # noqa: E402
from deconv2sub import ConvertOptions  # noqa: E402

TARGETS = ("portable", "onnxruntime", "openvino", "ncnn", "tflite", "iree", "ethos-n")
REPORT_FIELDS = ("status", "reason", "strategy", "strategy_reason", "shuffle", "crop")


def fixed_strategies() -> Tuple[str, ...]:
    """The fixed strategies of this version of the package (the registry's names)."""
    try:
        from deconv2sub.rewrite.emissions.registry import NAMES
    except ImportError:  # before the registry (the baseline of the restructuring)
        from deconv2sub.strategy import FIXED as NAMES
    return tuple(NAMES)


def models() -> Iterator[Tuple[str, onnx.ModelProto]]:
    """(label, model) of every sample and every benchmark block."""
    for path in sorted(glob.glob(os.path.join(ROOT, "samples", "*.onnx"))):
        yield "sample:" + os.path.basename(path), onnx.load(path)
    for spec in bench_blocks.all_blocks():
        yield "block:" + spec.label, bench_blocks.build_block(spec)


def sha(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def fingerprint(model: onnx.ModelProto, options: ConvertOptions) -> Dict[str, str]:
    """The model and report fingerprints of one conversion, or the error it raised."""
    try:
        converted, report = deconv2sub.convert_model(model, options)
    except Exception as err:  # noqa: BLE001 - a refusal is a fingerprint too
        return {"error": f"{type(err).__name__}: {err}"}
    fields = [{k: getattr(n, k) for k in REPORT_FIELDS} for n in report.nodes]
    return {
        "model": sha(converted.SerializeToString()),
        "report": sha(json.dumps(fields, sort_keys=True, default=str).encode()),
    }


def run() -> Dict[str, Dict[str, str]]:
    """Every case's fingerprint, keyed ``label|strategy|target``."""
    out = {}
    strategies = ("default",) + fixed_strategies()
    for label, model in models():
        for strategy in strategies:
            for target in TARGETS:
                options = ConvertOptions(strategy=strategy, target=target)
                out[f"{label}|{strategy}|{target}"] = fingerprint(model, options)
        print(f"{label}: done", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    """Write the fingerprints; compare them with a baseline when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--compare", help="an earlier output to compare with")
    args = parser.parse_args(argv)
    prints = run()
    with open(args.out, "w") as f:
        json.dump(prints, f, indent=1, sort_keys=True)
    print(f"{len(prints)} cases written to {args.out}")
    if not args.compare:
        return 0
    with open(args.compare) as f:
        base = json.load(f)
    differ = sorted(k for k in set(base) | set(prints) if base.get(k) != prints.get(k))
    for key in differ:
        print(f"DIFFERS {key}: {base.get(key)} -> {prints.get(key)}")
    print(f"{len(prints) - len(differ)} of {len(prints)} cases identical, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
