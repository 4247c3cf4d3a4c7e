"""Big-model benchmark: wall time and peak memory of ``deconv2sub convert`` with verification.

On a model with external data, against a plain ``onnx.load`` + ``onnx.save`` of the same model.

Usage (from the repository root)::

    .venv/bin/python benchmarks/big_model.py                 # ~2.4 GB model in a temporary folder
    .venv/bin/python benchmarks/big_model.py --size-gb 0.3 --dir /tmp/bm --keep

The model is a chain of ConvTranspose layers (k4 s2 p1, DCGAN-like) whose float32 weights make up
``--size-gb``; it is written straight to ``model.onnx`` + ``model.onnx.data`` without holding the
weights in memory. Each measured command runs in its own child process; its peak resident memory is
the child's ``ru_maxrss`` (``getrusage(RUSAGE_CHILDREN)`` read by a wrapper process that only runs
that one child). Budget (issue 6): convert with verification ≤ 4x the wall time of load + save, and
peak memory ≤ 3x the size of the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build_model(folder: str, size_bytes: int, layers: int = 3, seed: int = 0) -> dict:
    """Write ``folder/model.onnx`` (+ ``model.onnx.data``); returns facts about it."""
    from onnx import TensorProto, helper

    per_layer = size_bytes / layers
    channels = max(int((per_layer / (16 * 4)) ** 0.5), 1)  # weight [C, C, 4, 4] float32
    rng = np.random.default_rng(seed)
    path = os.path.join(folder, "model.onnx")
    data_name = "model.onnx.data"
    nodes, inits = [], []
    offset = 0
    with open(os.path.join(folder, data_name), "wb") as f:
        for i in range(layers):
            w = np.empty((channels, channels, 4, 4), np.float32)
            for c in range(0, channels, 256):  # fill in slices: no second copy of the layer
                block = rng.random((min(256, channels - c), channels, 4, 4), dtype=np.float32)
                w[c:c + 256] = (block - 0.5) * (2.0 / np.sqrt(channels * 4))
            pad = (-offset) % 4096
            f.write(b"\0" * pad)
            offset += pad
            w.tofile(f)
            t = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=list(w.shape))
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)),
                         ("length", str(w.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
            offset += w.nbytes
            inits.append(t)
            x_in = "x" if i == 0 else f"h{i - 1}"
            out = "y" if i == layers - 1 else f"h{i}"
            nodes.append(helper.make_node("ConvTranspose", [x_in, f"w{i}"], [out], name=f"up{i}",
                                          strides=[2, 2], pads=[1, 1, 1, 1]))
            del w
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                      [1, channels, 2**layers, 2**layers])
    graph = helper.make_graph(nodes, "big", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return {"path": path, "channels": channels, "layers": layers, "weights_bytes": offset}


_WRAPPER = r"""
import resource, subprocess, sys, time, json
t = time.perf_counter()
rc = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": rc, "wall_s": wall, "peak_rss_bytes": peak}))
"""


def measure(cmd: list) -> dict:
    """Run ``cmd`` in a fresh child; wall time and the child's peak RSS."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"measurement failed: {out.stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["stderr"] = out.stderr[-2000:]
    return result


def _baseline_cmd(src: str, dst: str) -> list:
    """The baseline: ``onnx.load`` + ``onnx.save`` (external data) in a child interpreter."""
    code = (
        "import onnx, sys; m = onnx.load(sys.argv[1]); "
        "onnx.save(m, sys.argv[2], save_as_external_data=True, all_tensors_to_one_file=True, "
        "location='plain.onnx.data')"
    )
    return [sys.executable, "-c", code, src, dst]


def _deconv2sub() -> str:
    """The ``deconv2sub`` console script next to this interpreter, else the one on PATH."""
    exe = os.path.join(os.path.dirname(sys.executable), "deconv2sub")
    return exe if os.path.exists(exe) else shutil.which("deconv2sub") or "deconv2sub"


def main(argv=None) -> int:
    """Command line: see the module docstring; exit 1 when over the budget."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=2.4, help="size of the weights (default 2.4)")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the files")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args(argv)

    folder = args.dir or tempfile.mkdtemp(prefix="deconv2sub-bigmodel-")
    os.makedirs(folder, exist_ok=True)
    need = 3.2 * args.size_gb * 1e9
    free = shutil.disk_usage(folder).free
    if free < need:
        print(f"not enough disk space in {folder}: {free / 1e9:.1f} GB free, "
              f"{need / 1e9:.1f} GB needed")
        return 2
    try:
        t = time.perf_counter()
        facts = build_model(folder, int(args.size_gb * 1e9), args.layers)
        print(f"built {facts['path']}: {facts['layers']} ConvTranspose layers, "
              f"C={facts['channels']}, weights {facts['weights_bytes'] / 1e9:.2f} GB in "
              f"{time.perf_counter() - t:.1f} s")
        weights = facts["weights_bytes"]
        rows = []

        plain = os.path.join(folder, "plain.onnx")
        base = measure(_baseline_cmd(facts["path"], plain))
        assert base["rc"] == 0, base["stderr"]
        rows.append(("onnx.load + onnx.save", base))
        for f in ("plain.onnx", "plain.onnx.data"):
            if os.path.exists(os.path.join(folder, f)):
                os.remove(os.path.join(folder, f))

        out = os.path.join(folder, "converted.onnx")
        conv = measure([_deconv2sub(), "convert", facts["path"], "-o", out, "--force", "--json",
                        "-q"])
        assert conv["rc"] == 0, conv["stderr"]
        rows.append(("deconv2sub convert (verified)", conv))
        size_out = os.path.getsize(out) + os.path.getsize(out + ".data")
        for f in ("converted.onnx", "converted.onnx.data"):
            os.remove(os.path.join(folder, f))

        noverify = measure([_deconv2sub(), "convert", facts["path"], "-o", out, "--force",
                            "--no-verify", "-q"])
        assert noverify["rc"] == 0, noverify["stderr"]
        rows.append(("deconv2sub convert --no-verify", noverify))

        print()
        print(f"{'command':34} {'wall s':>8} {'x load+save':>12} {'peak RSS GB':>12} "
              f"{'x weights':>10}")
        for name, r in rows:
            print(f"{name:34} {r['wall_s']:8.1f} {r['wall_s'] / base['wall_s']:12.2f} "
                  f"{r['peak_rss_bytes'] / 1e9:12.2f} {r['peak_rss_bytes'] / weights:10.2f}")
        ok_time = conv["wall_s"] <= 4 * base["wall_s"]
        ok_mem = conv["peak_rss_bytes"] <= 3 * weights
        print()
        print(f"weights {weights / 1e9:.2f} GB; output {size_out / 1e9:.2f} GB")
        print(f"budget: wall <= 4x load+save: {'OK' if ok_time else 'OVER'}; "
              f"peak <= 3x weights: {'OK' if ok_mem else 'OVER'}")
        if args.json:
            table = {n: {k: v for k, v in r.items() if k != "stderr"} for n, r in rows}
            print(json.dumps({"weights_bytes": weights, "rows": table}))
        return 0 if ok_time and ok_mem else 1
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
