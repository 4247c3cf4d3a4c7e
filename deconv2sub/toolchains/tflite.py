"""LiteRT (TFLite) toolchain: onnx2tf to a float32 ``.tflite``, run in ai-edge-litert.

The ``.tflite`` runs in ai-edge-litert's Interpreter (XNNPACK delegate, 2 threads, fp32).

onnx2tf 1.29 pins TensorFlow 2.19, onnx 1.19, numpy 1.26 and protobuf 4, which the project's venv
does not have, so the converter and the runtime live in their own interpreter (installed by
``.ci/toolchains/tflite.sh VENV``): this module starts ``tflite_worker.py`` there as a subprocess
and talks to it over a pipe. The interpreter is ``$DECONV2SUB_TFLITE_PYTHON``, else the current
one when it has the packages. One worker process serves every model of this Python process
(TensorFlow is imported once), so that two compiled models can be timed interleaved in one
process (:func:`benchmark`). The input model is never touched: onnx2tf runs onnxsim in place on
the file it is given, so the worker converts a private copy in ``workdir``.

Layouts: onnx2tf turns NCHW into NHWC (channel last for any rank >= 3), inputs and outputs
included. The worker maps each ONNX tensor by shape; where both readings fit (e.g. C == W), it
decides an output's layout by one probe run against ONNX Runtime on the model being converted, and
says so (``ambiguous_outputs``). Chatter (onnx2tf, TensorFlow, LiteRT) goes to
``workdir/onnx2tf.log``.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import subprocess
import sys
import threading
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from . import Compiled, ToolchainError

NAME = "tflite"
ENV_PYTHON = "DECONV2SUB_TFLITE_PYTHON"
INSTALL_HINT = "install it with `.ci/toolchains/tflite.sh /tmp/tc-tflite` and set " \
               f"{ENV_PYTHON}=/tmp/tc-tflite/bin/python"
REQUIRED = ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert", "onnxruntime", "onnxsim")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tflite_worker.py")


def toolchain_python() -> Optional[str]:
    """The interpreter that runs the worker.

    ``$DECONV2SUB_TFLITE_PYTHON``, else this one if it has the packages, else None.
    """
    explicit = os.environ.get(ENV_PYTHON)
    if explicit:
        return explicit
    if all(importlib.util.find_spec(m) is not None for m in REQUIRED):
        return sys.executable
    return None


def unavailable_reason() -> Optional[str]:
    """None when onnx2tf + LiteRT are usable, else what is missing and how to install it."""
    python = toolchain_python()
    if python is None:
        return f"onnx2tf/ai-edge-litert not importable here and {ENV_PYTHON} unset: {INSTALL_HINT}"
    if not os.path.isfile(python):
        return f"{ENV_PYTHON}={python} does not exist: {INSTALL_HINT}"
    probe = ("import importlib.util as u, sys; "
             f"m = [n for n in {REQUIRED!r} if u.find_spec(n) is None]; print(' '.join(m))")
    try:
        res = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot start {python}: {exc}"
    if res.returncode != 0:
        return f"{python} failed: {res.stderr.strip().splitlines()[-1:]}"
    missing = res.stdout.strip()
    if missing:
        return f"{python} lacks {missing}: {INSTALL_HINT}"
    return None


class _WorkerProcess:
    """The worker subprocess: one JSON request line in, one JSON answer line out."""

    def __init__(self, python: str, log_path: str):
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(python) + os.pathsep + env.get("PATH", "")  # onnxsim CLI
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["CUDA_VISIBLE_DEVICES"] = ""
        self.proc = subprocess.Popen([python, WORKER, log_path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, request: Dict) -> Dict:
        with self.lock:
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
        if not line:
            raise ToolchainError(f"tflite worker died (exit {self.proc.poll()}) during "
                                 f"{request.get('op')}")
        return json.loads(line)

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_worker: Optional[_WorkerProcess] = None


def _get_worker(workdir: str) -> _WorkerProcess:
    """The shared worker, started (or restarted after a crash) on demand."""
    global _worker
    if _worker is None or not _worker.alive():
        python = toolchain_python()
        reason = unavailable_reason()
        if reason is not None or python is None:
            raise ToolchainError(f"tflite unavailable: {reason}")
        _worker = _WorkerProcess(python, os.path.join(workdir, "worker.log"))
        atexit.register(_worker.close)
    return _worker


class TfliteCompiled(Compiled):
    """A ``.tflite`` file loaded in the worker's LiteRT Interpreter."""

    def __init__(self, worker: _WorkerProcess, answer: Dict, workdir: str):
        """Reads the worker's answer to a ``convert`` request."""
        self._worker = worker
        self.handle = int(answer["handle"])
        self.input_names = list(answer["input_names"])
        self.output_names = list(answer["output_names"])
        self.artifacts = [answer["tflite"], answer["log"]]
        #: TFLite builtin ops of the converted model, in order
        self.ops: List[str] = list(answer["ops"])
        #: number of XNNPACK partitions (1 = the whole graph in one delegate kernel)
        self.partitions = int(answer["partitions"])
        #: ops left on LiteRT's reference CPU kernels (not taken by XNNPACK)
        self.outside_xnnpack: List[str] = list(answer["outside_xnnpack"])
        #: per ONNX tensor, the ONNX axes in TFLite's order
        self.input_perm = {k: list(v) for k, v in answer["input_perm"].items()}
        self.output_perm = {k: list(v) for k, v in answer["output_perm"].items()}
        #: outputs whose layout was decided by the probe run (shape fits both readings)
        self.ambiguous_outputs: List[str] = list(answer["ambiguous_outputs"])
        self.workdir = workdir
        self._runs = 0

    def save_feeds(self, feeds: Mapping[str, np.ndarray], tag: str) -> str:
        """Write ``feeds`` (ONNX names, float32) to an .npz the worker reads."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ToolchainError(f"missing feeds for inputs {missing}")
        path = os.path.join(self.workdir, f"feeds_{tag}.npz")
        np.savez(path, **{n: np.asarray(feeds[n], dtype=np.float32) for n in self.input_names})
        return path

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One invoke in the worker; outputs in ONNX names and layout."""
        self._runs += 1
        feeds_path = self.save_feeds(feeds, f"run{self._runs}")
        out_path = os.path.join(self.workdir, f"outputs_run{self._runs}.npz")
        answer = self._worker.ask({"op": "run", "handle": self.handle, "feeds": feeds_path,
                                   "out": out_path})
        if not answer.get("ok"):
            raise ToolchainError(f"LiteRT run failed: {answer.get('error')}")
        with np.load(out_path) as data:
            outs = {n: data[n] for n in self.output_names}
        for path in (feeds_path, out_path):
            os.remove(path)
        return outs

    def timed_run(self, feeds: Mapping[str, np.ndarray]) -> float:
        """Seconds of one invoke, timed in the worker on feeds already in TFLite layout."""
        self._runs += 1
        feeds_path = self.save_feeds(feeds, f"time{self._runs}")
        try:
            answer = self._worker.ask({"op": "time", "handle": self.handle, "feeds": feeds_path})
        finally:
            os.remove(feeds_path)
        if not answer.get("ok"):
            raise ToolchainError(f"LiteRT run failed: {answer.get('error')}")
        return float(answer["seconds"])


def compile(model_path: str, input_shapes: Mapping[str, Sequence[int]], workdir: str,
            options: Optional[Dict] = None) -> TfliteCompiled:
    """onnx2tf-convert ``model_path`` for the static ``input_shapes``; load it in LiteRT.

    ``options``: extra keyword arguments for ``onnx2tf.convert`` (e.g.
    ``{"keep_ncw_or_nchw_or_ncdhw_input_names": ["x"]}``), for experiments.
    """
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    worker = _get_worker(workdir)
    request = {"op": "convert", "onnx": os.path.abspath(model_path), "workdir": workdir,
               "shapes": {k: [int(d) for d in v] for k, v in input_shapes.items()},
               "options": dict(options or {})}
    answer = worker.ask(request)
    if not answer.get("ok"):
        raise ToolchainError(str(answer.get("error", "conversion failed")).splitlines()[0])
    return TfliteCompiled(worker, answer, workdir)


def benchmark(models: Sequence[TfliteCompiled], feeds: Sequence[Mapping[str, np.ndarray]],
              samples: int = 30, warmup_s: float = 0.5) -> List[float]:
    """Median latency (ms) of each model on its feeds, timed interleaved in the worker process."""
    if not models:
        return []
    worker = models[0]._worker
    if any(m._worker is not worker for m in models):
        raise ToolchainError("models compiled in different tflite worker processes")
    paths = [m.save_feeds(f, f"bench{i}") for i, (m, f) in enumerate(zip(models, feeds))]
    answer = worker.ask({"op": "bench", "handles": [m.handle for m in models], "feeds": paths,
                         "samples": int(samples), "warmup_s": float(warmup_s)})
    for path in paths:
        os.remove(path)
    if not answer.get("ok"):
        raise ToolchainError(f"LiteRT benchmark failed: {answer.get('error')}")
    return [float(t) for t in answer["median_ms"]]
