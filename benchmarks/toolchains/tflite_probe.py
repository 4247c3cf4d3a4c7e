#!/usr/bin/env python3
r"""Which ONNX op forms onnx2tf + LiteRT get right: small hand-built models (IR 8, opset 17).

    DECONV2SUB_TFLITE_PYTHON=/tmp/tc-tflite/bin/python PYTHONPATH=. \\
        .venv/bin/python benchmarks/toolchains/tflite_probe.py [--only SUBSTR] [--out F.jsonl]

Each model is converted by onnx2tf, run in LiteRT, and compared with ONNX Runtime running the same
ONNX model (1e-3 abs + 1e-3 rel). ``--ct`` also sweeps small ConvTranspose models (1-D, 2-D, 3-D)
through every ``deconv2sub convert --strategy`` and compares with ORT on the original.
The builders are importable (the repros in tests/toolchain_repros/tflite/ are built with them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)

OPSET = 17


def make(nodes, inputs: Dict[str, Sequence[int]], outputs: Dict[str, Sequence[Optional[int]]],
         inits: Sequence[np.ndarray] = (), names: Sequence[str] = (),
         name="probe") -> onnx.ModelProto:
    """A float32 model, ir_version 8, opset 17."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v)) for k, v in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v) if v else None)
         for k, v in outputs.items()],
        [numpy_helper.from_array(a, n) for a, n in zip(inits, names)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def shape_init(name: str, shape: Sequence[int]) -> Tuple[np.ndarray, str]:
    """A shape constant (int64) and its name, for :func:`make`."""
    return np.array(list(shape), dtype=np.int64), name


def conv_k1(c_in: int, c_out: int, rank: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Weight and bias of a kernel-1 Conv (the tensor then comes out of a Conv, as in a rewrite)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal([c_out, c_in] + [1] * rank) / np.sqrt(c_in)).astype(np.float32)
    return w, rng.standard_normal(c_out).astype(np.float32)


def with_conv(c_in: int, c_mid: int, rank: int, first: str = "x") -> Tuple[List, List, List]:
    """(nodes, inits, names) of ``t0 = Conv_k1(x)`` with c_mid output channels."""
    w, b = conv_k1(c_in, c_mid, rank)
    return [helper.make_node("Conv", [first, "w", "b"], ["t0"])], [w, b], ["w", "b"]


def depth_to_space(c: int, b: int, h: int, w: int, mode: str) -> onnx.ModelProto:
    """Conv k1 -> DepthToSpace(b, mode): [1, C*b*b, H, W] -> [1, C, H*b, W*b]."""
    nodes, inits, names = with_conv(4, c * b * b, 2)
    nodes.append(helper.make_node("DepthToSpace", ["t0"], ["y"], blocksize=b, mode=mode))
    return make(nodes, {"x": [1, 4, h, w]}, {"y": [1, c, h * b, w * b]}, inits, names)


def shuffle_1d(c: int, s: int, length: int, rank: int, conv: bool = True) -> onnx.ModelProto:
    """1-D periodic shuffle [1, C*s, L] -> [1, C, L*s] as Reshape/Transpose of rank 3 or 4.

    rank 4: reshape [1, C, s, L], transpose [0, 1, 3, 2]; rank 3: reshape [C, s, L] (batch merged),
    transpose [0, 2, 1]; then reshape [1, C, L*s]. CRD channel order (c major, phase minor).
    """
    first = "x"
    nodes, inits, names = with_conv(4, c * s, 1) if conv else ([], [], [])
    src = "t0" if conv else first
    if rank == 4:
        mid, perm = [1, c, s, length], [0, 1, 3, 2]
    else:
        mid, perm = [c, s, length], [0, 2, 1]
    nodes += [helper.make_node("Reshape", [src, "s1"], ["t1"]),
              helper.make_node("Transpose", ["t1"], ["t2"], perm=perm),
              helper.make_node("Reshape", ["t2", "s2"], ["y"])]
    for arr, name in (shape_init("s1", mid), shape_init("s2", [1, c, length * s])):
        inits.append(arr)
        names.append(name)
    x_shape = [1, 4, length] if conv else [1, c * s, length]
    return make(nodes, {"x": x_shape}, {"y": [1, c, length * s]}, inits, names)


def shuffle_2d_rank6(c: int, b: int, h: int, w: int, mode: str) -> onnx.ModelProto:
    """2-D shuffle as one rank-6 Reshape/Transpose (DepthToSpace's own definition)."""
    nodes, inits, names = with_conv(4, c * b * b, 2)
    if mode == "DCR":
        mid, perm = [1, b, b, c, h, w], [0, 3, 4, 1, 5, 2]
    else:
        mid, perm = [1, c, b, b, h, w], [0, 1, 4, 2, 5, 3]
    nodes += [helper.make_node("Reshape", ["t0", "s1"], ["t1"]),
              helper.make_node("Transpose", ["t1"], ["t2"], perm=perm),
              helper.make_node("Reshape", ["t2", "s2"], ["y"])]
    inits += [np.array(mid, dtype=np.int64), np.array([1, c, h * b, w * b], dtype=np.int64)]
    names += ["s1", "s2"]
    return make(nodes, {"x": [1, 4, h, w]}, {"y": [1, c, h * b, w * b]}, inits, names)


def shuffle_2d_rank4(c: int, b: int, h: int, w: int) -> onnx.ModelProto:
    """2-D CRD shuffle as two rank-4 transposes: phase k into W, then phase j into H."""
    nodes, inits, names = with_conv(4, c * b * b, 2)
    steps = [([c * b, b, h, w], [0, 2, 3, 1], [c, b, h, w * b]),
             ([c, b, h, w * b], [0, 2, 1, 3], [1, c, h * b, w * b])]
    src = "t0"
    for i, (mid, perm, after) in enumerate(steps):
        nodes += [helper.make_node("Reshape", [src, f"a{i}"], [f"r{i}"]),
                  helper.make_node("Transpose", [f"r{i}"], [f"p{i}"], perm=perm),
                  helper.make_node("Reshape", [f"p{i}", f"b{i}"], [f"q{i}"])]
        inits += [np.array(mid, dtype=np.int64), np.array(after, dtype=np.int64)]
        names += [f"a{i}", f"b{i}"]
        src = f"q{i}"
    nodes[-1].output[0] = "y"
    return make(nodes, {"x": [1, 4, h, w]}, {"y": [1, c, h * b, w * b]}, inits, names)


def shuffle_3d(c: int, s: int, d: int, h: int, w: int, rank: int) -> onnx.ModelProto:
    """3-D CRD shuffle [1, C*s^3, D, H, W] -> [1, C, Ds, Hs, Ws].

    rank 8: one Reshape [1, C, s, s, s, D, H, W] + Transpose (the textbook form, rank 8);
    rank 4: three rank-4 transposes, one phase axis at a time (W, then H, then D).
    """
    nodes, inits, names = with_conv(4, c * s ** 3, 3)
    out = [1, c, d * s, h * s, w * s]
    if rank == 8:
        steps = [([1, c, s, s, s, d, h, w], [0, 1, 5, 2, 6, 3, 7, 4], out)]
    else:
        steps = [([c * s * s, s, d * h, w], [0, 2, 3, 1], [c * s, s, d, h, w * s]),
                 ([c * s, s, d * h, w * s], [0, 2, 1, 3], [c, s, d, h * s * w * s]),
                 ([c, s, d, h * s * w * s], [0, 2, 1, 3], out)]
    src = "t0"
    for i, (mid, perm, after) in enumerate(steps):
        nodes += [helper.make_node("Reshape", [src, f"a{i}"], [f"r{i}"]),
                  helper.make_node("Transpose", [f"r{i}"], [f"p{i}"], perm=perm),
                  helper.make_node("Reshape", [f"p{i}", f"b{i}"], [f"q{i}"])]
        inits += [np.array(mid, dtype=np.int64), np.array(after, dtype=np.int64)]
        names += [f"a{i}", f"b{i}"]
        src = f"q{i}"
    nodes[-1].output[0] = "y"
    return make(nodes, {"x": [1, 4, d, h, w]}, {"y": out}, inits, names)


def slice_crop(h: int, w: int) -> onnx.ModelProto:
    """Conv k1 -> Slice crop of 1 on each side of H and W."""
    nodes, inits, names = with_conv(4, 6, 2)
    nodes.append(helper.make_node("Slice", ["t0", "st", "en", "ax"], ["y"]))
    inits += [np.array([1, 1], np.int64), np.array([h - 1, w - 1], np.int64),
              np.array([2, 3], np.int64)]
    names += ["st", "en", "ax"]
    return make(nodes, {"x": [1, 4, h, w]}, {"y": [1, 6, h - 2, w - 2]}, inits, names)


def concat_phases(h: int, w: int) -> onnx.ModelProto:
    """Four phase Convs (k2) concatenated on channels, then DepthToSpace DCR (per-phase form)."""
    rng = np.random.default_rng(3)
    nodes, inits, names = [], [], []
    for i in range(4):
        inits.append(rng.standard_normal([3, 4, 2, 2]).astype(np.float32))
        names.append(f"w{i}")
        nodes.append(helper.make_node("Conv", ["x", f"w{i}"], [f"c{i}"], pads=[1, 1, 0, 0]))
    nodes += [helper.make_node("Concat", [f"c{i}" for i in range(4)], ["cat"], axis=1),
              helper.make_node("DepthToSpace", ["cat"], ["y"], blocksize=2, mode="DCR")]
    return make(nodes, {"x": [1, 4, h, w]}, {"y": [1, 3, 2 * h, 2 * w]}, inits, names)


def gather_axis(h: int, w: int, axis: int) -> onnx.ModelProto:
    """Conv k1 -> Gather with a permutation of one spatial axis (the row/column Gather shuffle)."""
    nodes, inits, names = with_conv(4, 6, 2)
    n = h if axis == 2 else w
    idx = np.random.default_rng(5).permutation(n).astype(np.int32)
    nodes.append(helper.make_node("Gather", ["t0", "idx"], ["y"], axis=axis))
    inits.append(idx)
    names.append("idx")
    return make(nodes, {"x": [1, 4, h, w]}, {"y": [1, 6, h, w]}, inits, names)


def gemm_1x1(c_in: int, c_out: int, k: int) -> onnx.ModelProto:
    """1x1-input decoder head: Flatten -> Gemm -> Reshape [1, C, k, k] -> Relu."""
    rng = np.random.default_rng(7)
    wt = (rng.standard_normal([c_in, c_out * k * k]) / np.sqrt(c_in)).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["g"]),
             helper.make_node("Reshape", ["g", "s"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    return make(nodes, {"x": [1, c_in, 1, 1]}, {"y": [1, c_out, k, k]},
                [wt, np.array([1, c_out, k, k], np.int64)], ["w", "s"])


def conv_transpose(c_in: int, c_out: int, spatial: Sequence[int], k: int, s: int, p: int,
                   op: int = 0, group: int = 1) -> onnx.ModelProto:
    """One ConvTranspose (1-D, 2-D or 3-D by len(spatial)) with bias, as the CLI sees it."""
    rng = np.random.default_rng(11)
    r = len(spatial)
    w = (rng.standard_normal([c_in, c_out // group] + [k] * r) / np.sqrt(c_in)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[s] * r,
                            pads=[p] * 2 * r, kernel_shape=[k] * r, group=group,
                            output_padding=[op] * r)
    out = [1, c_out] + [(n - 1) * s - 2 * p + k + op for n in spatial]
    return make([node], {"x": [1, c_in] + list(spatial)}, {"y": out}, [w, b], ["w", "b"])


def op_models() -> Dict[str, Callable[[], onnx.ModelProto]]:
    """Name -> builder of every hand-built probe."""
    models: Dict[str, Callable[[], onnx.ModelProto]] = {}
    for b, cs in ((2, (1, 3, 2)), (3, (2, 3)), (4, (1, 4)), (8, (1, 8))):
        for c in cs:
            for mode in ("CRD", "DCR"):
                models[f"d2s_{mode}_b{b}_c{c}"] = (lambda c=c, b=b, m=mode:
                                                   depth_to_space(c, b, 3, 5, m))
    for mode in ("CRD", "DCR"):
        models[f"rt6_2d_{mode}_b2_c3"] = lambda m=mode: shuffle_2d_rank6(3, 2, 3, 5, m)
    models["rt4_2d_CRD_b2_c3"] = lambda: shuffle_2d_rank4(3, 2, 3, 5)
    models["rt4_2d_CRD_b3_c2"] = lambda: shuffle_2d_rank4(2, 3, 4, 6)
    for c, s, length in ((4, 2, 10), (3, 8, 7), (16, 2, 16), (2, 4, 2), (1, 8, 9), (8, 8, 8)):
        for rank in (3, 4):
            models[f"rt{rank}_1d_c{c}_s{s}_l{length}"] = (lambda c=c, s=s, n=length, r=rank:
                                                         shuffle_1d(c, s, n, r))
    models["rt4_1d_c4_s2_l10_raw_input"] = lambda: shuffle_1d(4, 2, 10, 4, conv=False)
    for rank in (8, 4):
        models[f"rt{rank}_3d_c2_s2_d3h4w5"] = lambda r=rank: shuffle_3d(2, 2, 3, 4, 5, r)
        models[f"rt{rank}_3d_c3_s2_d4h4w4"] = lambda r=rank: shuffle_3d(3, 2, 4, 4, 4, r)
    models["slice_crop"] = lambda: slice_crop(6, 7)
    models["concat_phases"] = lambda: concat_phases(5, 6)
    models["gather_h"] = lambda: gather_axis(5, 7, 2)
    models["gather_w"] = lambda: gather_axis(5, 7, 3)
    models["gemm_1x1"] = lambda: gemm_1x1(16, 8, 4)
    return models


CT_MODELS = {
    "ct2d_k4s2p1_8>4_6x7": lambda: conv_transpose(8, 4, [6, 7], 4, 2, 1),
    "ct2d_k3s2p1op1_8>4_6x7": lambda: conv_transpose(8, 4, [6, 7], 3, 2, 1, 1),
    "ct2d_1x1in_k4s1_16>8": lambda: conv_transpose(16, 8, [1, 1], 4, 1, 0),
    "ct1d_k16s8p4_16>8_L12": lambda: conv_transpose(16, 8, [12], 16, 8, 4),
    "ct1d_k4s2p1_8>4_L20": lambda: conv_transpose(8, 4, [20], 4, 2, 1),
    "ct1d_k4s2p1_8>8_L8": lambda: conv_transpose(8, 8, [8], 4, 2, 1),
    "ct1d_k10s5p3op1_6>3_L9": lambda: conv_transpose(6, 3, [9], 10, 5, 3, 1),
    "ct3d_k2s2_8>4_3x4x5": lambda: conv_transpose(8, 4, [3, 4, 5], 2, 2, 0),
    "ct3d_k4s2p1_4>2_3x3x3": lambda: conv_transpose(4, 2, [3, 3, 3], 4, 2, 1),
}
CT_FORMS = {
    "a CRD": ["--strategy", "depth_to_space", "--order", "CRD"],
    "b DCR": ["--strategy", "depth_to_space", "--order", "DCR"],
    "c reshape": ["--strategy", "depth_to_space", "--shuffle", "reshape"],
    "d default": ["--target", "onnxruntime"],
    "e transpose": ["--strategy", "transpose"],
    "two_stage": ["--strategy", "two_stage"],
    "transpose_gather": ["--strategy", "transpose_gather"],
    "pointwise_gemm": ["--strategy", "pointwise_gemm"],
    "per_phase": ["--strategy", "per_phase"],
    "channels_last": ["--strategy", "channels_last"],
}


def check(path: str, ref_path: str, shapes: Dict, workdir: str) -> Dict:
    """Convert ``path`` with onnx2tf, run it in LiteRT, compare with ORT on ``ref_path``."""
    import onnxruntime as ort

    from deconv2sub.toolchains import ToolchainError, tflite

    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    ref = ort.InferenceSession(ref_path, providers=["CPUExecutionProvider"]).run(None, feeds)
    try:
        comp = tflite.compile(path, shapes, workdir)
    except ToolchainError as exc:
        return {"converts": False, "error": str(exc)}
    row = {"converts": True, "tfl_ops": comp.ops, "partitions": comp.partitions,
           "outside_xnnpack": comp.outside_xnnpack, "ambiguous": comp.ambiguous_outputs}
    try:
        out = comp.run(feeds)
    except ToolchainError as exc:
        row.update(runs=False, error=str(exc))
        return row
    errs, ok = [], True
    for name, r in zip(comp.output_names, ref):
        diff = np.abs(out[name].astype(np.float64) - r)
        errs.append(float(diff.max()))
        ok = ok and bool(np.all(diff <= 1e-3 + 1e-3 * np.abs(r)))
    row.update(runs=True, ok=ok, max_err=max(errs))
    return row


def cli_convert(src: str, dst: str, shapes: Dict, args: List[str]) -> Optional[str]:
    """The project's CLI; None on success, else its last stderr line."""
    cmd = [sys.executable, "-m", "deconv2sub.cli", "convert", src, "-o", dst, "--force"]
    for name, shape in shapes.items():
        cmd += ["--input-shape", f"{name}:{','.join(map(str, shape))}"]
    res = subprocess.run(cmd + args, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=False)
    if res.returncode != 0:
        return (res.stderr.strip().splitlines() or ["exit %d" % res.returncode])[-1]
    return None


def table(path: str) -> str:
    """Markdown table of a results file."""
    lines = ["| probe | form | converts | max err | ok | TFLite ops "
             "| partitions / outside XNNPACK |",
             "|---|---|---|---|---|---|---|"]
    for line in open(path):
        r = json.loads(line)
        if "deconv2sub_error" in r:
            lines.append(f"| {r['probe']} | {r['form']} | "
                         f"(deconv2sub: {r['deconv2sub_error'][:70]}) | | | | |")
            continue
        if not r.get("converts") or not r.get("runs"):
            lines.append(f"| {r['probe']} | {r['form']} | no: {r.get('error', '')[:100]} "
                         "| | | | |")
            continue
        counts: Dict[str, int] = {}
        for op in r["tfl_ops"]:
            counts[op] = counts.get(op, 0) + 1
        ops = " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))
        outside = ",".join(r["outside_xnnpack"]) or "-"
        lines.append(f"| {r['probe']} | {r['form']} | yes | {r['max_err']:.2g} | "
                     f"{'yes' if r['ok'] else '**NO**'} | {ops} | {r['partitions']} / {outside} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", metavar="JSONL", help="print the markdown table of a results file")
    ap.add_argument("--only", help="only probes whose name contains one of these (comma-separated)")
    ap.add_argument("--ct", action="store_true", help="the ConvTranspose x strategy sweep instead")
    ap.add_argument("--forms", help="with --ct: comma-separated form names (default: all)")
    ap.add_argument("--out", default="tflite_probe.jsonl")
    args = ap.parse_args(argv)
    if args.table:
        print(table(args.table))
        return 0
    tmp = tempfile.mkdtemp(prefix="tfl_probe_")
    with open(args.out, "a") as out:
        items = CT_MODELS if args.ct else op_models()
        for name, build in items.items():
            if args.only and not any(o in name for o in args.only.split(",")):
                continue
            model = build()
            src = os.path.join(tmp, name + ".onnx")
            onnx.save(model, src)
            shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
                      for i in model.graph.input}
            forms = CT_FORMS if args.ct else {"as built": None}
            if args.ct and args.forms:
                forms = {k: v for k, v in CT_FORMS.items() if k in args.forms.split(",")}
            if args.ct:
                forms = {"original": None, **forms}
            for form, cli_args in forms.items():
                path = src
                row = {"probe": name, "form": form}
                if cli_args is not None:
                    path = os.path.join(tmp, f"{name}_{form.split()[0]}.onnx")
                    err = cli_convert(src, path, shapes, cli_args)
                    if err:
                        row["deconv2sub_error"] = err
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                        continue
                row.update(check(path, src, shapes, os.path.join(tmp, "w_" + name + form[:1])))
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(name, form, {k: row.get(k) for k in ("converts", "ok", "max_err", "error")},
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
