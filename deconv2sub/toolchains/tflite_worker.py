"""The LiteRT (TFLite) side of the ``tflite`` toolchain runner, a stand-alone script.

It runs in the interpreter that has onnx2tf, TensorFlow and ai-edge-litert (their pins conflict
with the project's onnx/numpy/protobuf, so it usually lives in its own venv; see
``.ci/toolchains/tflite.sh``).

It imports nothing from deconv2sub: :mod:`deconv2sub.toolchains.tflite` starts it as
``python tflite_worker.py`` and talks to it over a pipe, one JSON request per line and one JSON
answer per line. Arrays travel as ``.npz`` files in the caller's work folder. Requests:

* ``{"op": "convert", "onnx": path, "shapes": {name: shape}, "workdir": path}``: onnx2tf (fp32),
  then load the ``*_float32.tflite`` with the LiteRT Interpreter (XNNPACK, 2 threads); answers a
  handle, the TFLite ops, the XNNPACK partition count, the ops left outside XNNPACK and, per ONNX
  tensor, the axis permutation from ONNX (NCHW) to TFLite layout.
* ``{"op": "run", "handle": h, "feeds": npz, "out": npz}``: one invoke; outputs in ONNX layout.
* ``{"op": "bench", "handles": [a, b], "feeds": [npz_a, npz_b], "samples": n, "warmup_s": s}``:
  median ms of each, timed interleaved (a, b, b, a, ...) in this one process.
* ``{"op": "time", "handle": h, "feeds": npz}``: seconds of one invoke on the feeds in TFLite
  layout (the layout change is not timed), no outputs saved.

Converter chatter (onnx2tf's prints, TensorFlow's C++ logs) never reaches the protocol pipe: file
descriptors 1 and 2 point at a log file; the protocol uses a duplicate of the original stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import sys
import time
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

THREADS = 2
# onnx2tf reads this file from the current folder (else downloads it) whenever every input is a
# small-batch 4-D tensor whose last dim is 3; it only feeds onnx2tf's own dummy inference.
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@contextlib.contextmanager
def redirected_fds(log_path: str):
    """Point fds 1 and 2 at ``log_path`` for the duration (C++ logs included), then restore."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def last_error_line(text: str) -> str:
    """The converter's key message: the last line that looks like an error, else the last line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keys = ("Error", "error", "ERROR", "failed", "Failed", "not supported", "Exception")
    for line in reversed(lines):
        if any(k in line for k in keys) and not line.startswith("File "):
            return line[:400]
    return lines[-1][:400] if lines else "no message"


def ensure_calibration_file(folder: str) -> None:
    """Write a synthetic calibration file so that onnx2tf never tries the network."""
    path = os.path.join(folder, CALIBRATION_FILE)
    if not os.path.isfile(path):
        rng = np.random.default_rng(0)
        np.save(path, rng.random((20, 128, 128, 3), dtype=np.float32))


def private_copy(onnx_path: str, folder: str) -> str:
    """A copy of the model (external data inlined) for onnx2tf.

    Onnx2tf runs onnxsim IN PLACE on the file it is given: the caller's model must never change.
    """
    import onnx

    os.makedirs(folder, exist_ok=True)
    copy = os.path.join(folder, os.path.basename(onnx_path))
    if os.path.abspath(copy) == os.path.abspath(onnx_path):
        raise RuntimeError(f"work folder {folder} holds the input model itself")
    onnx.save(onnx.load(onnx_path), copy)
    return copy


def onnx_io_shapes(onnx_path: str, shapes: Dict[str, List[int]]) -> Tuple[Dict, Dict, List, List]:
    """Static shapes of the ONNX inputs and outputs (outputs from one ONNX Runtime run)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(onnx_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    in_names = [i.name for i in model.graph.input if i.name not in inits]
    out_names = [o.name for o in model.graph.output]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        dtype = np.float32 if "float" in inp.type else np.int64
        feeds[inp.name] = np.zeros(shapes[inp.name], dtype=dtype)
    outs = sess.run(out_names, feeds)
    return ({n: list(shapes[n]) for n in in_names},
            {n: list(o.shape) for n, o in zip(out_names, outs)}, in_names, out_names)


def channel_last(rank: int) -> List[int]:
    """ONNX NC... -> N...C axis order (onnx2tf's layout for rank >= 3)."""
    return [0] + list(range(2, rank)) + [1] if rank >= 3 else list(range(rank))


def candidate_perms(onnx_shape: Sequence[int], tfl_shape: Sequence[int]) -> List[List[int]]:
    """The layouts (identity, channel-last) under which ``tfl_shape`` is ``onnx_shape`` permuted."""
    rank = len(onnx_shape)
    found = []
    for perm in (list(range(rank)), channel_last(rank)):
        if len(tfl_shape) == rank and [onnx_shape[p] for p in perm] == list(tfl_shape):
            if perm not in found:
                found.append(perm)
    return found


def sanitize(name: str) -> str:
    """How onnx2tf spells an ONNX tensor name in the TFLite signature."""
    return name.replace(":", "__").lstrip("/")


def delegation(interp) -> Tuple[int, List[str]]:
    """(XNNPACK partitions, ops left on the reference CPU kernels) of a loaded interpreter.

    A delegated op's outputs are either delegate outputs or dead; an op left outside keeps its
    outputs alive (graph output, or read by a DELEGATE node or by another op left outside) and they
    are not delegate outputs. Ops are in topological order, so one backwards pass decides.
    """
    ops = interp._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    d_out = {int(t) for d in delegates for t in d["outputs"]}
    d_in = {int(t) for d in delegates for t in d["inputs"]}
    graph_out = {int(d["index"]) for d in interp.get_output_details()}
    live_in: set = set()
    outside = []
    for op in reversed(originals):
        outs = [int(t) for t in op["outputs"]]
        if any(t not in d_out and (t in graph_out or t in d_in or t in live_in) for t in outs):
            outside.append(op["op_name"])
            live_in.update(int(t) for t in op["inputs"] if t >= 0)
    return len(delegates), list(reversed(outside))


class PlainRunner:
    """The signature runner's interface over the interpreter's own input/output tensors.

    For a ``.tflite`` that onnx2tf wrote without a signature.
    """

    def __init__(self, interp):
        """Indexes the interpreter's input and output tensors by name."""
        self.interp = interp
        self.inputs = {d["name"]: d for d in interp.get_input_details()}
        self.outputs = {d["name"]: d for d in interp.get_output_details()}

    def get_input_details(self) -> Dict:
        """Input tensor details by name."""
        return self.inputs

    def get_output_details(self) -> Dict:
        """Output tensor details by name."""
        return self.outputs

    def __call__(self, **feeds) -> Dict[str, np.ndarray]:
        """One invoke on TFLite-layout feeds; outputs by tensor name."""
        for name, arr in feeds.items():
            self.interp.set_tensor(self.inputs[name]["index"], arr)
        self.interp.invoke()
        return {n: self.interp.get_tensor(d["index"]).copy() for n, d in self.outputs.items()}


class Loaded:
    """One converted model loaded in the LiteRT Interpreter, with its layout maps."""

    def __init__(self, tflite_path: str, onnx_in: Dict, onnx_out: Dict, in_names, out_names):
        """Loads ``tflite_path`` (XNNPACK) and maps the ONNX inputs to its tensors."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.path = tflite_path
        self.interp = Interpreter(model_path=tflite_path, num_threads=THREADS)
        self.interp.allocate_tensors()
        no_delegate = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        plain = Interpreter(model_path=tflite_path, num_threads=1,
                            experimental_op_resolver_type=no_delegate)
        self.ops = [o["op_name"] for o in plain._get_ops_details()]
        self.partitions, self.outside = delegation(self.interp)
        self.in_names, self.out_names = in_names, out_names
        sigs = self.interp.get_signature_list()
        if sigs:  # onnx2tf usually writes serving_default, keyed by the ONNX names
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            self.runner = self.interp.get_signature_runner(key)
        else:  # some models get no signature at all (outputs named Identity, ...)
            self.runner = PlainRunner(self.interp)
        self.sig_in = self._match(in_names, list(self.runner.get_input_details()))
        self.sig_out = self._match(out_names, list(self.runner.get_output_details()))
        in_det = self.runner.get_input_details()
        self.in_perm, self.in_ambiguous = {}, []
        for name in in_names:
            self.in_perm[name] = self._perm(name, onnx_in[name],
                                            list(in_det[self.sig_in[name]]["shape"]))
        self.onnx_out = onnx_out
        self.out_perm: Dict[str, List[int]] = {}
        self.out_ambiguous: List[str] = []

    @staticmethod
    def _match(names: List[str], sig_names: List[str]) -> Dict[str, str]:
        """ONNX tensor name -> TFLite signature name (onnx2tf's spelling, else by position)."""
        by_sane = {sanitize(n): n for n in sig_names}
        if all(sanitize(n) in by_sane for n in names):
            return {n: by_sane[sanitize(n)] for n in names}
        if len(names) == len(sig_names):
            return dict(zip(names, sig_names))
        raise RuntimeError(f"cannot match ONNX tensors {names} to TFLite signature {sig_names}")

    def _perm(self, name: str, onnx_shape, tfl_shape) -> List[int]:
        perms = candidate_perms(onnx_shape, tfl_shape)
        if not perms:
            raise RuntimeError(f"TFLite tensor {name!r} has shape {tfl_shape}, which is no layout "
                               f"of the ONNX shape {onnx_shape}")
        return perms[-1]

    def feed(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """ONNX-layout feeds -> signature-runner keyword arguments in TFLite layout."""
        return {self.sig_in[n]: np.ascontiguousarray(np.transpose(feeds[n], self.in_perm[n]))
                for n in self.in_names}

    def invoke(self, tfl_feeds) -> Dict[str, np.ndarray]:
        """One invoke on TFLite-layout feeds; raw TFLite outputs."""
        return self.runner(**tfl_feeds)

    def settle_outputs(self, probe: Optional[Dict[str, np.ndarray]], expected) -> None:
        """Decide each output's layout: by shape, or where both readings fit, by a probe run."""
        raw = self.invoke(self.feed(probe)) if probe is not None else None
        for i, name in enumerate(self.out_names):
            tfl_shape = list(self.runner.get_output_details()[self.sig_out[name]]["shape"])
            perms = candidate_perms(self.onnx_out[name], tfl_shape)
            if not perms:
                raise RuntimeError(f"TFLite output {name!r} has shape {tfl_shape}, no layout of "
                                   f"the ONNX shape {self.onnx_out[name]}")
            if len(perms) > 1 and raw is not None:
                self.out_ambiguous.append(name)
                errs = [np.max(np.abs(np.transpose(raw[self.sig_out[name]], np.argsort(p))
                                      - expected[i])) for p in perms]
                perms = [perms[int(np.argmin(errs))]]
            self.out_perm[name] = perms[-1]

    def outputs(self, raw: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """TFLite outputs -> ONNX names and layout."""
        return {n: np.ascontiguousarray(np.transpose(raw[self.sig_out[n]],
                                                     np.argsort(self.out_perm[n])))
                for n in self.out_names}

    def run(self, feeds) -> Dict[str, np.ndarray]:
        """One invoke on ONNX-layout feeds; outputs in ONNX names and layout."""
        return self.outputs(self.invoke(self.feed(feeds)))


def probe_feeds(onnx_path: str, onnx_in: Dict) -> Tuple[Dict, List]:
    """Random feeds and ONNX Runtime's outputs on them (to tell apart layouts of equal shape)."""
    import onnxruntime as ort

    rng = np.random.default_rng(1234)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in onnx_in.items()}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    return feeds, sess.run(None, feeds)


def tflite_feeds(model: Loaded, path: str) -> Dict[str, np.ndarray]:
    """The feeds saved at ``path``, in ``model``'s TFLite layout (signature-runner arguments)."""
    with np.load(path) as data:
        return model.feed({k: data[k] for k in data.files})


class Worker:
    """Holds the loaded models; answers requests."""

    def __init__(self):
        """No models loaded yet."""
        self.models: Dict[int, Loaded] = {}

    def convert(self, req) -> Dict:
        """Answers a ``convert`` request: onnx2tf, then load the ``.tflite``."""
        workdir = req["workdir"]
        os.makedirs(workdir, exist_ok=True)
        log_path = os.path.join(workdir, "onnx2tf.log")
        stem = os.path.splitext(os.path.basename(req["onnx"]))[0]
        out_dir = os.path.join(workdir, "onnx2tf_out")
        shapes = {k: [int(d) for d in v] for k, v in req["shapes"].items()}
        cwd = os.getcwd()
        try:
            with redirected_fds(log_path):
                onnx_path = private_copy(req["onnx"], os.path.join(workdir, "onnx2tf_in"))
                onnx_in, onnx_out, in_names, out_names = onnx_io_shapes(onnx_path, shapes)
                ensure_calibration_file(workdir)
                os.chdir(workdir)
                import onnx2tf
                import tf_keras

                tf_keras.backend.clear_session()
                onnx2tf.convert(
                    input_onnx_file_path=onnx_path,
                    output_folder_path=out_dir,
                    copy_onnx_input_output_names_to_tflite=True,
                    output_signaturedefs=True,  # needed for ONNX names with '/' (PyTorch's)
                    overwrite_input_shape=[f"{n}:{','.join(map(str, s))}"
                                           for n, s in onnx_in.items()],
                    verbosity="error",
                    **req.get("options", {}),
                )
        except BaseException as exc:  # noqa: BLE001 - onnx2tf raises anything, even SystemExit
            os.chdir(cwd)
            with open(log_path, errors="replace") as f:
                log = f.read()
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return {"ok": False, "error": f"onnx2tf: {msg} ({last_error_line(log)})"
                    if str(exc).strip() else f"onnx2tf: {last_error_line(log)}", "log": log_path}
        os.chdir(cwd)
        tflite = os.path.join(out_dir, f"{stem}_float32.tflite")
        if not os.path.isfile(tflite):
            with open(log_path, errors="replace") as f:
                return {"ok": False, "error": f"onnx2tf wrote no {os.path.basename(tflite)} "
                        f"({last_error_line(f.read())})", "log": log_path}
        try:
            with redirected_fds(log_path):
                loaded = Loaded(tflite, onnx_in, onnx_out, in_names, out_names)
                probe, expected = probe_feeds(req["onnx"], onnx_in)
                loaded.settle_outputs(probe, expected)
        except BaseException as exc:  # noqa: BLE001
            with open(log_path, errors="replace") as f:
                log = f.read()
            text = " ".join(str(exc).split())[:400]
            why = text if text else f"{type(exc).__name__} ({last_error_line(log)})"
            return {"ok": False, "error": f"LiteRT: {why}", "log": log_path}
        handle = len(self.models) + 1
        self.models[handle] = loaded
        return {"ok": True, "handle": handle, "tflite": tflite, "ops": loaded.ops,
                "partitions": loaded.partitions, "outside_xnnpack": loaded.outside,
                "input_names": in_names, "output_names": out_names,
                "input_perm": loaded.in_perm, "output_perm": loaded.out_perm,
                "ambiguous_outputs": loaded.out_ambiguous, "log": log_path}

    def run(self, req) -> Dict:
        """Answers a ``run`` request: feeds from, outputs to ``.npz`` files."""
        model = self.models[req["handle"]]
        with np.load(req["feeds"]) as data:
            feeds = {k: data[k] for k in data.files}
        outs = model.run(feeds)
        np.savez(req["out"], **outs)
        return {"ok": True}

    def time(self, req) -> Dict:
        """Answers a ``time`` request: seconds of one invoke, feeds converted before."""
        model = self.models[req["handle"]]
        feeds = tflite_feeds(model, req["feeds"])
        t0 = time.perf_counter()
        model.invoke(feeds)
        return {"ok": True, "seconds": time.perf_counter() - t0}

    def bench(self, req) -> Dict:
        """Median ms of each model, timed interleaved a, b, b, a, ... after a warm-up."""
        models = [self.models[h] for h in req["handles"]]
        feeds = [tflite_feeds(m, path) for m, path in zip(models, req["feeds"])]
        end = time.perf_counter() + float(req.get("warmup_s", 0.5))
        while time.perf_counter() < end:
            for m, f in zip(models, feeds):
                m.invoke(f)
        times: List[List[float]] = [[] for _ in models]
        order = list(range(len(models)))
        for i in range(int(req.get("samples", 30))):
            for j in (order if i % 2 == 0 else order[::-1]):
                t0 = time.perf_counter()
                models[j].invoke(feeds[j])
                times[j].append((time.perf_counter() - t0) * 1e3)
        return {"ok": True, "median_ms": [statistics.median(t) for t in times]}


def serve(inp, out) -> None:
    """The request loop; every answer is one JSON line, errors included."""
    worker = Worker()
    for line in inp:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            answer = getattr(worker, req["op"])(req)
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:400],
                      "trace": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def main() -> int:
    """Serves requests on stdin; fds 1 and 2 go to the log named by argv[1]."""
    proto = os.fdopen(os.dup(1), "w")
    log = sys.argv[1] if len(sys.argv) > 1 else os.devnull
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    serve(sys.stdin, proto)
    return 0


if __name__ == "__main__":
    sys.exit(main())
