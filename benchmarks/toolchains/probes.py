"""Hand-built small ONNX models that probe what a toolchain does with the ops the rewrites emit.

The models (opset 13, IR 8): DepthToSpace CRD/DCR per block size, Reshape/Transpose shuffles of
rank 4-8, Slice crops, Concat of phase Convs, Gather, Gemm, a 1x1-input ConvTranspose.

    python benchmarks/toolchains/probes.py ncnn mnn                 # markdown table
    python benchmarks/toolchains/probes.py ncnn --only d2s --save DIR   # keep the models

Each model runs on each toolchain in a child process (:func:`worker`; a native crash is that
probe's row) and is compared with ONNX Runtime on the same model (1e-3 abs + 1e-3 rel).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPSET, IR = 13, 8
ATOL = RTOL = 1e-3


def _model(nodes, inputs: Dict[str, List[int]], inits=(), name="probe") -> onnx.ModelProto:
    """A float32 model with one output ``y`` (shape left to inference)."""
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, name, ins, [out], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR)
    return onnx.shape_inference.infer_shapes(model)


def _const(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _weights(name: str, shape, seed: int = 0) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)


def depth_to_space(mode: str, b: int, c: int, hw: int = 4) -> Tuple[onnx.ModelProto, dict]:
    """``x [1, c*b*b, hw, hw] -> DepthToSpace(b, mode)``."""
    shape = [1, c * b * b, hw, hw]
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=b, mode=mode)
    return _model([node], {"x": shape}), {"x": shape}


def reshape_transpose(shapes_in: List[int], mid: List[int], perm: List[int],
                      out: List[int]) -> Tuple[onnx.ModelProto, dict]:
    """``x -> Reshape(mid) -> Transpose(perm) -> Reshape(out)``: a shuffle of rank len(mid)."""
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=perm),
             helper.make_node("Reshape", ["t", "s2"], ["y"])]
    return _model(nodes, {"x": shapes_in}, [_const("s1", mid), _const("s2", out)]), \
        {"x": shapes_in}


def rt_cascade_3d(c: int = 2, s: int = 2, d: int = 3) -> Tuple[onnx.ModelProto, dict]:
    """3-D shuffle (CRD channel order c, s_d, s_h, s_w) as three rank-4 Reshape/Transpose steps.

    Each step moves one factor right after the spatial axis it multiplies (batch 1 folded away).
    """
    x = [1, c * s ** 3, d, d, d]
    steps = [  # (rank-4 view, shape after the step)
        ([c, s, s * s * d, d * d], [c, s, s, d * s, d, d]),
        ([c, s, s * d * s * d, d], [c, s, d * s, d * s, d]),
        ([c, s, d * s * d * s * d, 1], [1, c, d * s, d * s, d * s]),
    ]
    nodes, inits, cur = [], [], "x"
    for k, (view, after) in enumerate(steps):
        out = "y" if k == len(steps) - 1 else f"o{k}"
        inits += [_const(f"v{k}", view), _const(f"a{k}", after)]
        nodes += [helper.make_node("Reshape", [cur, f"v{k}"], [f"r{k}"]),
                  helper.make_node("Transpose", [f"r{k}"], [f"t{k}"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", [f"t{k}", f"a{k}"], [out])]
        cur = out
    return _model(nodes, {"x": x}, inits), {"x": x}


def slice_crop() -> Tuple[onnx.ModelProto, dict]:
    """``Conv 3x3 -> Slice`` on H and W (the crop a rewrite leaves)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Slice", ["c", "st", "en", "ax"], ["y"])]
    inits = [_weights("w", [4, 3, 3, 3]), _const("st", [1, 1]), _const("en", [9, 8]),
             _const("ax", [2, 3])]
    return _model(nodes, {"x": [1, 3, 10, 10]}, inits), {"x": [1, 3, 10, 10]}


def concat_convs(phases: int = 4) -> Tuple[onnx.ModelProto, dict]:
    """``phases`` Convs of one input, concatenated on channels (per-phase emission)."""
    nodes, inits, outs = [], [], []
    for p in range(phases):
        inits.append(_weights(f"w{p}", [2, 3, 2, 2], seed=p))
        nodes.append(helper.make_node("Conv", ["x", f"w{p}"], [f"c{p}"], pads=[0, 0, 1, 1]))
        outs.append(f"c{p}")
    nodes.append(helper.make_node("Concat", outs, ["y"], axis=1))
    return _model(nodes, {"x": [1, 3, 6, 6]}, inits), {"x": [1, 3, 6, 6]}


def gather(axis: int, rank: int = 4) -> Tuple[onnx.ModelProto, dict]:
    """``Gather(axis)`` with a permuting index vector (the gather shuffle)."""
    shape = [1, 4, 6, 8][:rank] if rank == 4 else [1, 4, 6, 8, 5][:rank]
    idx = np.random.default_rng(axis).permutation(shape[axis])
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    return _model([node], {"x": shape}, [_const("i", idx)]), {"x": shape}


def gemm() -> Tuple[onnx.ModelProto, dict]:
    """``Flatten -> Gemm(transB) -> Reshape [1, C, 4, 4]`` (a 1x1-input ConvTranspose as Gemm)."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w", "b"], ["g"], transB=1),
             helper.make_node("Reshape", ["g", "s"], ["y"])]
    inits = [_weights("w", [32, 16]), _weights("b", [32], seed=1), _const("s", [1, 2, 4, 4])]
    return _model(nodes, {"x": [1, 16, 1, 1]}, inits), {"x": [1, 16, 1, 1]}


def convtranspose_1x1_input() -> Tuple[onnx.ModelProto, dict]:
    """``ConvTranspose k4 s1`` on a 1x1 input (DCGAN's first layer)."""
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[4, 4])
    return _model([node], {"x": [1, 16, 1, 1]}, [_weights("w", [16, 8, 4, 4])]), \
        {"x": [1, 16, 1, 1]}


def probes() -> Dict[str, Callable[[], Tuple[onnx.ModelProto, dict]]]:
    """All probes by name."""
    out = {}
    for mode in ("CRD", "DCR"):
        for b in (2, 3, 4, 8):
            for c in sorted({1, 3, b}):
                tag = "eq" if c == b else "ne"
                out[f"d2s_{mode}_b{b}_c{c}_{tag}"] = (lambda m=mode, bb=b, cc=c:
                                                      depth_to_space(m, bb, cc))
    c, s, n = 3, 4, 5
    out["rt_rank4_1d"] = lambda: reshape_transpose([1, c * s, n], [1, c, s, n], [0, 1, 3, 2],
                                                   [1, c, n * s])
    out["rt_rank5_3d_one_axis"] = lambda: reshape_transpose(
        [1, c * 2, 3, 4, 5], [1, c, 2, 3, 20], [0, 1, 3, 2, 4], [1, c, 6, 4, 5])
    out["rt_rank6_2d_CRD"] = lambda: reshape_transpose(
        [1, c * 4, 3, 5], [1, c, 2, 2, 3, 5], [0, 1, 4, 2, 5, 3], [1, c, 6, 10])
    out["rt_rank6_2d_DCR"] = lambda: reshape_transpose(
        [1, c * 4, 3, 5], [1, 2, 2, c, 3, 5], [0, 3, 4, 1, 5, 2], [1, c, 6, 10])
    out["rt_rank7_3d_partial"] = lambda: reshape_transpose(
        [1, c * 4, 2, 3, 4], [1, c, 2, 2, 2, 3, 4], [0, 1, 4, 2, 5, 3, 6], [1, c, 4, 6, 4])
    out["rt_rank8_3d"] = lambda: reshape_transpose(
        [1, c * 8, 2, 3, 2], [1, c, 2, 2, 2, 2, 3, 2], [0, 1, 5, 2, 6, 3, 7, 4], [1, c, 4, 6, 4])
    out["rt_cascade_3d_rank4"] = rt_cascade_3d
    out["slice_crop"] = slice_crop
    out["concat_phase_convs"] = concat_convs
    for axis in (1, 2, 3):
        out[f"gather_axis{axis}"] = lambda a=axis: gather(a)
    out["gemm_flatten_reshape"] = gemm
    out["convtranspose_1x1_input"] = convtranspose_1x1_input
    return out


def feeds_for(shapes: Dict[str, List[int]], seed: int = 0) -> Dict[str, np.ndarray]:
    """Random N(0,1) float32 feeds."""
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}


def compare(comp, feeds, expect) -> dict:
    """Runs ``comp`` once: runs? max err vs ``expect``, within tolerance?"""
    row = {"converts": True, "runs": False, "ops": list(getattr(comp, "ops", []))}
    try:
        got = comp.run(feeds)
    except Exception as exc:  # the runtime's refusal, whatever its type
        row["error"] = f"run: {exc}"
        return row
    row["runs"] = True
    errs, ok = [], True
    for name, want in expect.items():
        have = got.get(name)
        if have is None or have.shape != want.shape:
            row["error"] = f"{name}: shape {None if have is None else have.shape} != {want.shape}"
            return row
        errs.append(float(np.abs(have - want).max()))
        ok &= bool(np.allclose(have, want, atol=ATOL, rtol=RTOL))
    row["max_err"], row["matches"] = max(errs), ok
    return row


def short_error(text: str) -> str:
    """The toolchain's key words of an error, without our wrapping."""
    for prefix in ("ncnn could not load the converted model: ",
                   "MNN could not load the converted model: ", "run: "):
        text = text.replace(prefix, "")
    text = text.replace(" not exists or registered", " missing")
    return text[:110]


def cell(row: dict) -> str:
    """One table cell: the verdict and max error, or why not."""
    if not row.get("converts"):
        return "rejected: " + short_error(row.get("error", ""))
    if not row.get("runs"):
        return "no run: " + short_error(row.get("error", ""))
    if "max_err" not in row:
        return "**WRONG** " + short_error(row.get("error", ""))
    verdict = "ok" if row["matches"] else "**WRONG**"
    return f"{verdict} {row['max_err']:.0e}"


def worker(toolchain: str, list_file: str) -> None:
    """Every probe of ``list_file`` ([{name, path, shapes}]) on one toolchain.

    Prints one JSON line per probe as it goes; ORT on the same model is the reference.
    """
    import importlib

    from deconv2sub.toolchains import ToolchainError

    tc = importlib.import_module(f"deconv2sub.toolchains.{toolchain}")
    with open(list_file) as f:
        items = json.load(f)
    import onnxruntime as ort

    for item in items:
        feeds = feeds_for(item["shapes"])
        sess = ort.InferenceSession(item["path"], providers=["CPUExecutionProvider"])
        expect = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        with tempfile.TemporaryDirectory() as wd:
            try:
                row = compare(tc.compile(item["path"], item["shapes"], wd), feeds, expect)
            except ToolchainError as exc:
                row = {"converts": False, "runs": False, "error": str(exc)}
        print(json.dumps({"probe": item["name"], **row}), flush=True)


def run_all(toolchain: str, items: List[dict], folder: str) -> Dict[str, dict]:
    """:func:`worker` in child processes; a crash is that probe's row, the rest go on."""
    rows: Dict[str, dict] = {}
    todo = list(items)
    while todo:
        list_file = os.path.join(folder, f"todo-{toolchain}.json")
        with open(list_file, "w") as f:
            json.dump(todo, f)
        argv = [sys.executable, os.path.abspath(__file__), "--worker", toolchain, list_file]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False,
                              env={**os.environ, "PYTHONPATH": ROOT})
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                rows[row.pop("probe")] = row
                print(f"[{toolchain}] {list(rows)[-1]}: {cell(row)}", file=sys.stderr,
                      flush=True)
        todo = [it for it in todo if it["name"] not in rows]
        if todo:  # the first remaining probe crashed the process
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            rows[todo[0]["name"]] = {"converts": "?", "runs": False,
                                     "error": f"crashed (exit {proc.returncode}): {tail[0][:200]}"}
            todo = todo[1:]
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("toolchains", nargs="+")
    p.add_argument("--only", action="append", help="probe name substrings (repeatable)")
    p.add_argument("--save", help="folder to keep the probe models in")
    p.add_argument("--json", help="write all rows here")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1], argv[2])
        return 0
    args = p.parse_args(argv)
    folder = args.save or tempfile.mkdtemp(prefix="d2s-probes-")
    os.makedirs(folder, exist_ok=True)
    items = []
    for name, build in probes().items():
        if args.only and not any(o in name for o in args.only):
            continue
        model, shapes = build()
        path = os.path.join(folder, name + ".onnx")
        onnx.save(model, path)
        items.append({"name": name, "path": path, "shapes": shapes})
    per_tc = {tc: run_all(tc, items, folder) for tc in args.toolchains}
    results = {it["name"]: {tc: per_tc[tc][it["name"]] for tc in args.toolchains} for it in items}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print("| probe | " + " | ".join(args.toolchains) + " | ops (" + args.toolchains[0] + ") |")
    print("|---" * (len(args.toolchains) + 2) + "|")
    for name, rows in results.items():
        ops = " ".join(o for o in rows[args.toolchains[0]].get("ops", []) if o != "Input")
        print(f"| {name} | " + " | ".join(cell(rows[t]) for t in args.toolchains) + f" | {ops} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
