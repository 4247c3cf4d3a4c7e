#!/usr/bin/env python3
r"""Latency of realistic upsampling blocks: original ConvTranspose vs the deconv2sub rewrite.

    .venv/bin/python benchmarks/bench_blocks.py [--runtime ort|openvino|ort-cuda|all] [--quick] \
        [--json]

Each block is ``X -> ConvTranspose [-> BatchNormalization -> Relu] -> Y`` with realistic channel
counts and sizes. It is converted with the default options (or ``--strategy``) for the runtime being
measured (``target`` = that runtime, as ``deconv2sub convert --target <it>`` does; ``--option
target=...`` to measure one target's model on another runtime), every ConvTranspose must be
rewritten, and the two models are checked equal on the runtime before timing. Both models are timed
in the same process, interleaved (original, converted, converted, original, ...), after a warm-up;
each sample is the mean of a few back-to-back runs (>= 5 ms), and the table reports the median times
and the median of the paired ratios ``original / converted`` (> 1: the rewrite is faster; its
interquartile range shows the noise), with the geometric mean over the blocks. By default every
table is measured in three fresh processes and the per-block medians are reported (``--processes``;
the spread column is then the range of the three speedups): where the buffers land in memory changes
a transpose's speed by up to 2x from one process to the next. Before each block the script waits
(``--quiet-wait``) for other processes to leave the CPUs idle, and re-measures a block whose paired
ratios spread more than 10 %.

Runtime settings:

* ONNX Runtime (``ort``): CPUExecutionProvider, ``ORT_ENABLE_ALL``, ``intra_op_num_threads = 2``
  (``--threads``), ``inter_op_num_threads = 1``, sequential execution, ``allow_spinning = 0`` (the
  two sessions alternate; a spinning idle pool of one would steal the cores of the other).
* ``ort-cuda``: CUDAExecutionProvider (+ CPU), ``ORT_ENABLE_ALL``; timings include the
  host<->device copies of inputs and outputs (IO binding is not used), as an application calling
  ``run`` sees them.
* OpenVINO (``openvino``): CPU plugin, ``PERFORMANCE_HINT = LATENCY`` (its default),
  ``INFERENCE_NUM_THREADS = 2`` (``--threads``), ``INFERENCE_PRECISION_HINT = f32`` (on CPUs with
  bf16 support OpenVINO would otherwise compute in bf16, which would not compare like with like);
  ``infer(share_inputs=True, share_outputs=True)`` so that no Python-side copies are timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import deconv2sub  # noqa: E402
from deconv2sub import ConvertOptions  # noqa: E402


@dataclass(frozen=True)
class BlockSpec:
    """One benchmark block: a ConvTranspose's attributes and input size, optionally + BN + ReLU."""

    name: str
    c_in: int
    c_out: int
    spatial: tuple  # input spatial size
    kernel: int
    stride: int
    pad: int
    output_padding: int = 0
    bn_relu: bool = False

    @property
    def label(self) -> str:
        """The block's name in tables, with " +BN+ReLU" when it has them."""
        return self.name + (" +BN+ReLU" if self.bn_relu else "")


BASE_BLOCKS = [
    BlockSpec("DCGAN k4 s2 p1 128>64 32x32", 128, 64, (32, 32), 4, 2, 1),
    BlockSpec("U-Net k2 s2 128>64 64x64", 128, 64, (64, 64), 2, 2, 0),
    BlockSpec("ENet k3 s2 p1 op1 64>32 64x64", 64, 32, (64, 64), 3, 2, 1, 1),
    BlockSpec("FCN k16 s8 p4 21>21 16x16", 21, 21, (16, 16), 16, 8, 4),
    BlockSpec("HiFi-GAN 1-D k16 s8 p4 256>128 L2000", 256, 128, (2000,), 16, 8, 4),
    BlockSpec("HiFi-GAN 1-D k4 s2 p1 128>64 L8000", 128, 64, (8000,), 4, 2, 1),
    BlockSpec("3-D k2 s2 32>16 16^3", 32, 16, (16, 16, 16), 2, 2, 0),
]


def all_blocks() -> List[BlockSpec]:
    """Every base block, each without and with BN + ReLU after it."""
    out = []
    for b in BASE_BLOCKS:
        out.append(b)
        out.append(BlockSpec(**{**b.__dict__, "bn_relu": True}))
    return out


def build_block(spec: BlockSpec, seed: int = 0) -> onnx.ModelProto:
    """``X -> ConvTranspose [-> BatchNormalization -> Relu] -> Y`` (opset 17, IR 8, float32)."""
    rng = np.random.default_rng(seed)
    n = len(spec.spatial)
    k = [spec.kernel] * n
    w = (rng.standard_normal((spec.c_in, spec.c_out, *k))
         / math.sqrt(spec.c_in * spec.kernel**n)).astype(np.float32)
    b = (0.1 * rng.standard_normal(spec.c_out)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    attrs = dict(strides=[spec.stride] * n, pads=[spec.pad] * (2 * n), kernel_shape=k)
    if spec.output_padding:
        attrs["output_padding"] = [spec.output_padding] * n
    out = "Y" if not spec.bn_relu else "up"
    nodes = [helper.make_node("ConvTranspose", ["X", "W", "B"], [out], name="up", **attrs)]
    if spec.bn_relu:
        for name, v in [("bn_scale", 1 + 0.1 * rng.standard_normal(spec.c_out)),
                        ("bn_bias", 0.1 * rng.standard_normal(spec.c_out)),
                        ("bn_mean", 0.1 * rng.standard_normal(spec.c_out)),
                        ("bn_var", 0.5 + rng.random(spec.c_out))]:
            inits.append(numpy_helper.from_array(v.astype(np.float32), name))
        nodes.append(helper.make_node("BatchNormalization",
                                      ["up", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["bn"],
                                      name="bn", epsilon=1e-5))
        nodes.append(helper.make_node("Relu", ["bn"], ["Y"], name="relu"))
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, spec.c_in, *spec.spatial])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "block", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


# ---- runtimes -----------------------------------------------------------------------------------
def ort_session(model: onnx.ModelProto, threads: int, cuda: bool = False) -> Callable[[Dict], list]:
    """An ONNX Runtime session of ``model`` as a function of the feeds (settings: module doc)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not cuda:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # Idle workers must not spin: the two sessions alternate, and a spinning pool of one would
        # steal the cores of the other (on 2 cores that alone made timings vary 3x). (A process-wide
        # pool shared by both sessions was tried too: its workers spin and, with the calling
        # thread, oversubscribe 2 cores; timings got worse.)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda
                 else ["CPUExecutionProvider"])
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=providers)
    if cuda and "CUDAExecutionProvider" not in sess.get_providers():
        raise RuntimeError("CUDAExecutionProvider is not available")
    return lambda feeds: sess.run(None, feeds)


def openvino_session(model: onnx.ModelProto, threads: int) -> Callable[[Dict], list]:
    """An OpenVINO CPU infer request of ``model`` as a function of the feeds (module doc)."""
    import openvino as ov

    core = ov.Core()
    ov_model = core.read_model(model=model.SerializeToString(), weights=b"")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()

    def run(feeds):
        # Shared buffers: no Python-side copies of inputs/outputs (ORT's run does not copy either).
        results = request.infer(feeds, share_inputs=True, share_outputs=True)
        return [results[o] for o in compiled.outputs]

    return run


def make_runner(runtime: str, model: onnx.ModelProto, threads: int) -> Callable[[Dict], list]:
    """The run function of ``model`` on ``runtime`` (ort, ort-cuda or openvino)."""
    if runtime == "ort":
        return ort_session(model, threads)
    if runtime == "ort-cuda":
        return ort_session(model, threads, cuda=True)
    if runtime == "openvino":
        return openvino_session(model, threads)
    raise ValueError(runtime)


def runtime_label(runtime: str, threads: int) -> str:
    """The runtime's name, version and settings, as a table title."""
    if runtime == "openvino":
        import openvino as ov

        return f"OpenVINO {ov.__version__.split('-')[0]} CPU ({threads} threads, LATENCY, f32)"
    import onnxruntime as ort

    if runtime == "ort-cuda":
        return f"ONNX Runtime {ort.__version__} CUDA"
    return f"ONNX Runtime {ort.__version__} CPU ({threads} intra-op threads, ORT_ENABLE_ALL)"


# ---- timing -------------------------------------------------------------------------------------
def _time(fn, feeds, inner: int) -> float:
    t0 = time.perf_counter()
    for _ in range(inner):
        fn(feeds)
    return (time.perf_counter() - t0) / inner


def time_pair(run_a, run_b, feeds, *, warmup_s: float, samples: int,
              min_sample_s: float = 0.005) -> tuple:
    """(median seconds of ``run_a``, of ``run_b``, median of the paired ratios a/b, their IQR).

    Sampled interleaved after a warm-up: each pair times ``a`` then ``b`` (or ``b`` then ``a``,
    alternately) back to back, so that a disturbance (another process on the machine, frequency
    changes) hits both sides of a pair alike; the speedup is the median of the per-pair ratios.
    """
    t_end = time.perf_counter() + warmup_s
    while time.perf_counter() < t_end:
        run_a(feeds)
        run_b(feeds)
    one = max(_time(run_a, feeds, 1), _time(run_b, feeds, 1), 1e-6)
    inner = max(1, int(min_sample_s / one))
    ta, tb = [], []
    for i in range(samples):
        if i % 2 == 0:
            ta.append(_time(run_a, feeds, inner))
            tb.append(_time(run_b, feeds, inner))
        else:
            tb.append(_time(run_b, feeds, inner))
            ta.append(_time(run_a, feeds, inner))
    ratios = sorted(a / b for a, b in zip(ta, tb))
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios), q3 - q1


def _cpu_busy(interval: float = 0.3) -> float:
    """Fraction of the machine's CPU time that *other* processes used over ``interval``.

    Linux only (0.0 elsewhere). This process is excluded: its runtime thread pools may still be
    winding down.
    """

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        return sum(v), v[3] + (v[4] if len(v) > 4 else 0), int(own[11]) + int(own[12])

    try:
        t0, i0, s0 = sample()
        time.sleep(interval)
        t1, i1, s1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = max(t1 - t0, 1)
    return max(0.0, (total - (i1 - i0) - (s1 - s0)) / total)


def wait_quiet(max_wait_s: float, threshold: float = 0.15, log=print) -> None:
    """Waits (up to ``max_wait_s``) until other processes leave the CPUs idle.

    Timings taken while something else runs on a 2-core machine are noise.
    """
    t_end = time.perf_counter() + max_wait_s
    busy = _cpu_busy()
    warned = False
    while busy > threshold and time.perf_counter() < t_end:
        if not warned:
            log(f"  (machine {busy:.0%} busy: waiting up to {max_wait_s:.0f} s for it to go quiet)")
            warned = True
        time.sleep(1.0)
        busy = _cpu_busy()


@dataclass
class Row:
    """One block's line of a table."""

    block: str
    original_ms: float  # median
    converted_ms: float  # median
    speedup: float  # median of the paired ratios original / converted
    spread: float  # interquartile range of the paired ratios (noise indicator)
    nodes: str  # op types of the converted model
    max_err: float


@dataclass
class Table:
    """The table of one runtime: a row per block."""

    runtime: str
    label: str
    options: dict
    rows: List[Row] = field(default_factory=list)

    @property
    def geomean(self) -> float:
        """The geometric mean of the blocks' speedups."""
        return math.exp(sum(math.log(r.speedup) for r in self.rows) / len(self.rows))

    def markdown(self) -> str:
        """The table in Markdown, with its geometric mean and slowest block."""
        lines = [f"### {self.label}", "",
                 "| block | original ms | converted ms | speedup (spread) | converted graph |",
                 "|---|---:|---:|---:|---|"]
        for r in self.rows:
            lines.append(f"| {r.block} | {r.original_ms:.3f} | {r.converted_ms:.3f} | "
                         f"{r.speedup:.2f}x ({r.spread:.2f}) | {r.nodes} |")
        lo = min(r.speedup for r in self.rows)
        lines.append(f"| **geometric mean** | | | **{self.geomean:.2f}x** | min {lo:.2f}x |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The table as JSON data (``--json``)."""
        return {"runtime": self.runtime, "label": self.label, "options": self.options,
                "geomean": self.geomean,
                "min": min(r.speedup for r in self.rows),
                "rows": [dict(r.__dict__) for r in self.rows]}


def _summarise_ops(model: onnx.ModelProto) -> str:
    """The op types in order, runs counted: ``Conv > DepthToSpace > Slice``, ``Convx4``."""
    ops = [n.op_type for n in model.graph.node]
    out, prev, count = [], None, 0
    for op in ops + [None]:
        if op == prev:
            count += 1
            continue
        if prev is not None:
            out.append(prev if count == 1 else f"{prev}x{count}")
        prev, count = op, 1
    return " > ".join(out)


def convert(model: onnx.ModelProto, options: ConvertOptions) -> onnx.ModelProto:
    """The block converted with ``options``; exits unless every ConvTranspose was rewritten."""
    converted, report = deconv2sub.convert_model(model, options)
    if report.skipped or any(n.op_type == "ConvTranspose" for n in converted.graph.node):
        reasons = [n.reason for n in report.skipped]
        raise SystemExit(f"not every ConvTranspose was rewritten: {reasons}")
    return converted


def bench_runtime(runtime: str, blocks: List[BlockSpec], options: ConvertOptions, *, threads: int,
                  quick: bool, log=print, quiet_s: float = 60.0, retries: int = 2) -> Table:
    """The table of ``runtime`` in this process: each block checked equal, then timed paired."""
    table = Table(runtime, runtime_label(runtime, threads), dict(options.__dict__))
    for spec in blocks:
        model = build_block(spec)
        converted = convert(model, options)
        rng = np.random.default_rng(1)
        feeds = {"X": rng.standard_normal((1, spec.c_in, *spec.spatial)).astype(np.float32)}
        run_a = make_runner(runtime, model, threads)
        run_b = make_runner(runtime, converted, threads)
        ref, got = run_a(feeds)[0], run_b(feeds)[0]
        if ref.shape != got.shape:
            raise SystemExit(f"{spec.label}: shape {got.shape} != {ref.shape}")
        err = float(np.max(np.abs(ref - got)) / max(1.0, float(np.max(np.abs(ref)))))
        if err > 1e-4:
            raise SystemExit(f"{spec.label}: converted output differs "
                             f"(relative max error {err:.2e})")
        best = None
        for _attempt in range(1 if quick else retries + 1):
            wait_quiet(quiet_s, log=log)
            result = time_pair(run_a, run_b, feeds, warmup_s=0.2 if quick else 0.5,
                               samples=15 if quick else 61)
            if best is None or result[3] < best[3]:
                best = result
            # quiet enough: interquartile range within 10 % of the ratio
            if best[3] <= 0.1 * best[2]:
                break
        ta, tb, ratio, spread = best
        del run_a, run_b
        gc.collect()
        row = Row(spec.label, ta * 1e3, tb * 1e3, ratio, spread, _summarise_ops(converted), err)
        table.rows.append(row)
        log(f"  {runtime}: {row.block}: {row.original_ms:.3f} ms -> {row.converted_ms:.3f} ms "
            f"({row.speedup:.2f}x)")
    return table


def _options(args, runtime: str) -> ConvertOptions:
    """The ConvertOptions of ``--strategy``/``--option``.

    ``target`` defaults to the measured runtime, as ``deconv2sub convert --runtime <runtime>`` does
    (its ``--target`` defaults to the runtime it verifies on).
    """
    kwargs = {"target": "openvino" if runtime == "openvino" else "onnxruntime"}
    for item in args.option or []:
        key, _, value = item.partition("=")
        kwargs[key] = {"true": True, "false": False}.get(value.lower(), value)
    if args.strategy:
        kwargs["strategy"] = args.strategy
    return ConvertOptions(**kwargs)


def _in_processes(runtime: str, argv: List[str], processes: int, log) -> Table:
    """The table of ``runtime`` measured in ``processes`` fresh processes.

    Per block the median speedup (and median times); ``spread`` becomes the range of the
    per-process speedups.
    """
    import subprocess

    base = [a for a in argv if a not in ("--json",)]
    keep, skip = [], False
    # drop --runtime X / --processes K; each child measures one runtime in one process
    for a in base:
        if skip:
            skip = False
            continue
        if a in ("--runtime", "--processes"):
            skip = True
            continue
        if a.startswith(("--runtime=", "--processes=")):
            continue
        keep.append(a)
    runs = []
    for i in range(processes):
        log(f"  {runtime}: process {i + 1} of {processes}")
        out = subprocess.run([sys.executable, os.path.abspath(__file__), *keep,
                              "--runtime", runtime, "--json", "--processes", "1"],
                             stdout=subprocess.PIPE, stderr=None, check=True, text=True)
        runs.append(json.loads(out.stdout)[0])
    first = runs[0]
    table = Table(runtime, first["label"] + f", median of {processes} processes", first["options"])
    for j, row in enumerate(first["rows"]):
        ratios = [r["rows"][j]["speedup"] for r in runs]
        table.rows.append(Row(row["block"],
                              statistics.median(r["rows"][j]["original_ms"] for r in runs),
                              statistics.median(r["rows"][j]["converted_ms"] for r in runs),
                              statistics.median(ratios), max(ratios) - min(ratios), row["nodes"],
                              max(r["rows"][j]["max_err"] for r in runs)))
    return table


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", choices=["ort", "openvino", "ort-cuda", "all"], default="all",
                   help="all = ort + openvino (+ ort-cuda when a GPU is usable)")
    p.add_argument("--quick", action="store_true", help="shorter warm-up and fewer samples")
    p.add_argument("--json", action="store_true",
                   help="print the tables as JSON on stdout (progress on stderr)")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads (ORT intra-op / OpenVINO), default 2")
    p.add_argument("--strategy", default=None,
                   help="ConvertOptions.strategy (default: the library default)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="other ConvertOptions fields")
    p.add_argument("--only", default=None, help="substring filter on block names")
    p.add_argument("--quiet-wait", type=float, default=60.0, metavar="S",
                   help="before each block, wait up to S seconds for other processes to leave "
                        "the CPUs idle")
    p.add_argument("--retries", type=int, default=2,
                   help="re-measure a block whose paired ratios spread > 10%%")
    p.add_argument("--processes", type=int, default=None, metavar="K",
                   help="measure every table in K fresh processes and report the per-block "
                        "medians (default 3, 1 with --quick): where buffers land in memory changes "
                        "a transpose's speed from one process to the next, so one process can be "
                        "consistently lucky or unlucky")
    args = p.parse_args(argv)
    processes = args.processes if args.processes is not None else (1 if args.quick else 3)

    runtimes = [args.runtime]
    if args.runtime == "all":
        runtimes = ["ort", "openvino"]
        try:
            from deconv2sub.runtime.ort import cuda_status

            if cuda_status()[0]:
                runtimes.append("ort-cuda")
        except Exception:
            pass
    blocks = [b for b in all_blocks() if not args.only or args.only.lower() in b.label.lower()]
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    log(f"# deconv2sub block benchmark ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs), options {_options(args, runtimes[0])}")
    if processes <= 1:
        tables = [bench_runtime(rt, blocks, _options(args, rt), threads=args.threads,
                                quick=args.quick, log=log, quiet_s=args.quiet_wait,
                                retries=args.retries) for rt in runtimes]
    else:
        child_argv = argv if argv is not None else sys.argv[1:]
        tables = [_in_processes(rt, child_argv, processes, log) for rt in runtimes]
    if args.json:
        print(json.dumps([t.to_dict() for t in tables], indent=1))
    else:
        for t in tables:
            print()
            print(t.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
