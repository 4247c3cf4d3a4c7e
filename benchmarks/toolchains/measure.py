"""Measure deployment toolchains on the samples and benchmark blocks in each rewrite form.

For every (model, form) the form is made with the project's CLI (``deconv2sub convert``), then
each toolchain converts it with its own converter and runs it in its own runtime; the outputs are
compared with ONNX Runtime running the ORIGINAL model, and original vs converted latency is timed
on the toolchain in one process, interleaved (median of the samples after a warm-up).

    python benchmarks/toolchains/measure.py ncnn mnn            # samples + blocks, markdown table
    python benchmarks/toolchains/measure.py mnn --only seed_example --json out.json

Each toolchain run is a child process (a native crash is a row, not the end of the table).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

#: static shapes (batch 1) for the bundled samples
SAMPLE_SHAPES = {
    "seed_example": {"x": [1, 1, 4, 4]},
    "dcgan_generator": {"z": [1, 16, 1, 1]},
    "autoencoder": {"x": [1, 1, 28, 28]},
    "unet_decoder": {"x": [1, 3, 64, 64]},
    "enet_decoder": {"x": [1, 32, 16, 16]},
    "hifigan_upsampler": {"mel": [1, 16, 64]},
    "unet3d_upblock": {"x": [1, 16, 4, 4, 4], "skip": [1, 8, 8, 8, 8]},
    "grouped_upsampler": {"x": [1, 8, 16, 16]},
}

#: the forms: label -> extra CLI options (None: the original model)
FORMS = {
    "original": None,
    "a CRD": ["--strategy", "depth_to_space", "--order", "CRD"],
    "b DCR": ["--strategy", "depth_to_space", "--order", "DCR"],
    "c reshape": ["--strategy", "depth_to_space", "--shuffle", "reshape"],
    "d default": ["--target", "onnxruntime"],
    "e transpose": ["--strategy", "transpose"],
}

ATOL = RTOL = 1e-3


def form_model(src: str, shapes: Dict[str, List[int]], form: str, folder: str) -> str:
    """The model of ``form`` for ``src`` (made once with the CLI); the source for the original."""
    if FORMS[form] is None:
        return src
    out = os.path.join(folder, os.path.basename(src)[:-5] + "." + form.split()[0] + ".onnx")
    if os.path.exists(out):
        return out
    argv = [sys.executable, "-m", "deconv2sub.cli", "convert", src, "-o", out, "--force", "-q"]
    for name, shape in shapes.items():
        argv += ["--input-shape", f"{name}:{','.join(map(str, shape))}"]
    proc = subprocess.run(argv + FORMS[form], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT})
    if proc.returncode != 0:
        raise RuntimeError(f"deconv2sub convert failed: {proc.stderr.strip()[-300:]}")
    return out


def feeds_for(shapes: Dict[str, List[int]], seed: int = 0) -> Dict[str, np.ndarray]:
    """Random N(0,1) float32 feeds."""
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}


def timed(fn, feeds, warmup: int = 3, samples: int = 15, budget_s: float = 4.0) -> List[float]:
    """Warm up, then up to ``samples`` timings (ms) within ``budget_s``."""
    for _ in range(warmup):
        fn(feeds)
    out, end = [], time.perf_counter() + budget_s
    while len(out) < samples and (len(out) < 3 or time.perf_counter() < end):
        t = time.perf_counter()
        fn(feeds)
        out.append(1e3 * (time.perf_counter() - t))
    return out


def compare(comp, feeds, expect) -> dict:
    """Run ``comp`` once: runs? max err vs ``expect``, within tolerance?"""
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


def worker(toolchain: str, original: str, shapes_json: str, forms: List[str]) -> None:
    """Forms (``label=path``) of one model on one toolchain, one JSON line each as it goes:
    converts? runs? max err vs ORT on the original; ms original/form, interleaved.
    """
    import onnxruntime as ort

    from deconv2sub.toolchains import ToolchainError

    tc = importlib.import_module(f"deconv2sub.toolchains.{toolchain}")
    shapes = json.loads(shapes_json)
    feeds = feeds_for(shapes)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    ref = ort.InferenceSession(original, opts, providers=["CPUExecutionProvider"])
    expect = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, feeds)))
    base = None
    with tempfile.TemporaryDirectory() as wd:
        for i, item in enumerate(forms):
            label, path = item.split("=", 1)
            try:
                comp = tc.compile(path, shapes, os.path.join(wd, str(i)))
            except ToolchainError as exc:
                row = {"converts": False, "runs": False, "error": str(exc)}
            else:
                row = compare(comp, feeds, expect)
                if row.get("max_err") is not None and path != original:
                    if base is None:
                        base = tc.compile(original, shapes, os.path.join(wd, "orig"))
                    tb, tf = [], []
                    for _ in range(3):  # interleaved rounds
                        tb += timed(base.run, feeds, samples=5)
                        tf += timed(comp.run, feeds, samples=5)
                    row["ms_original"] = statistics.median(tb)
                    row["ms_form"] = statistics.median(tf)
                    # on a loaded machine the minimum is the steadier figure
                    row["ms_original_min"], row["ms_form_min"] = min(tb), min(tf)
            print(json.dumps({"form": label, **row}), flush=True)


def run_worker(toolchain: str, src: str, shapes: dict, forms: Dict[str, str]) -> Dict[str, dict]:
    """Child processes running :func:`worker`; a crash is that form's row, the rest go on."""
    rows: Dict[str, dict] = {}
    todo = dict(forms)
    while todo:
        argv = [sys.executable, os.path.abspath(__file__), "--worker", toolchain, src,
                json.dumps(shapes)] + [f"{k}={v}" for k, v in todo.items()]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                              env={**os.environ, "PYTHONPATH": ROOT})
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                rows[row.pop("form")] = row
        todo = {k: v for k, v in todo.items() if k not in rows}
        if todo:  # the first remaining form crashed the process
            first = next(iter(todo))
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            rows[first] = {"converts": "?", "runs": False,
                           "error": f"crashed (exit {proc.returncode}): {tail[0][:200]}"}
            todo.pop(first)
    return rows


def measure(toolchain: str, name: str, src: str, shapes: dict, folder: str) -> Dict[str, dict]:
    """All forms of one model on one toolchain."""
    rows, paths = {}, {}
    for form in FORMS:
        try:
            paths[form] = form_model(src, shapes, form, folder)
        except RuntimeError as exc:
            rows[form] = {"converts": False, "runs": False, "error": str(exc)}
    rows.update(run_worker(toolchain, src, shapes, paths))
    for form in FORMS:
        print(f"[{toolchain}] {name} / {form}: {cell(rows[form])}", file=sys.stderr, flush=True)
    return {form: rows[form] for form in FORMS}


def short_error(text: str) -> str:
    """The toolchain's key words of an error, without our wrapping."""
    for prefix in ("ncnn could not load the converted model: ",
                   "MNN could not load the converted model: ", "run: "):
        text = text.replace(prefix, "")
    text = text.replace(" not exists or registered", " missing")
    return text[:110]


def cell(row: dict) -> str:
    """One table cell: err and timing, or why not."""
    if not row.get("converts"):
        return "rejected: " + short_error(row.get("error", ""))
    if not row.get("runs"):
        return "no run: " + short_error(row.get("error", ""))
    if "max_err" not in row:
        return "**WRONG** " + short_error(row.get("error", ""))
    verdict = "ok" if row["matches"] else "**WRONG**"
    text = f"{verdict} {row['max_err']:.0e}"
    if "ms_form" in row:
        text += f"; {row['ms_original']:.3g}->{row['ms_form']:.3g} ms"
    return text


def render(results: Dict[str, Dict[str, Dict[str, dict]]]) -> None:
    """The markdown table per toolchain: model x form."""
    for tc, table in results.items():
        print(f"\n### {tc}\n\n| model | " + " | ".join(FORMS) + " |")
        print("|---" * (len(FORMS) + 1) + "|")
        for name, rows in table.items():
            print(f"| {name} | " + " | ".join(cell(rows[f]) for f in FORMS if f in rows) + " |")


def block_models(folder: str, small: bool) -> Dict[str, tuple]:
    """The benchmark blocks saved as ONNX files: name -> (path, shapes)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import onnx
    from bench_blocks import all_blocks, build_block

    out = {}
    for spec in all_blocks():
        if spec.bn_relu:
            continue  # the BN+ReLU twins convert like their plain block
        model = onnx.shape_inference.infer_shapes(build_block(spec))  # the CLI wants Y's type
        key = "block " + spec.name
        path = os.path.join(folder, "block_" + "".join(c if c.isalnum() else "_" for c in spec.name)
                            + ".onnx")
        onnx.save(model, path)
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        out[key] = (path, {"X": shape})
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(argv[1], argv[2], argv[3], argv[4:])
        return 0
    if argv and argv[0] == "--render":  # tables from saved --json files
        for path in argv[1:]:
            with open(path) as f:
                render(json.load(f))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("toolchains", nargs="+")
    p.add_argument("--only", action="append", help="model names (repeatable)")
    p.add_argument("--no-blocks", action="store_true")
    p.add_argument("--reverse", action="store_true", help="models in reverse order")
    p.add_argument("--json", help="write all rows here")
    p.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "d2s-tc-forms"))
    args = p.parse_args(argv)
    os.makedirs(args.folder, exist_ok=True)
    models = {n: (os.path.join(ROOT, "samples", n + ".onnx"), s) for n, s in SAMPLE_SHAPES.items()}
    if not args.no_blocks:
        models.update(block_models(args.folder, small=True))
    if args.only:
        models = {n: v for n, v in models.items() if any(o in n for o in args.only)}
    if args.reverse:
        models = dict(reversed(list(models.items())))
    results = {}
    for tc in args.toolchains:
        for name, (src, shapes) in models.items():
            results.setdefault(tc, {})[name] = measure(tc, name, src, shapes, args.folder)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1)
    render(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
