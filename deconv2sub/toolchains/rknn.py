"""Rockchip RKNN-Toolkit2: ``load_onnx`` + ``build`` for the RK3588 NPU, run on its simulator.

The model is loaded with ``RKNN.load_onnx(model, inputs=<names>, input_size_list=<static shapes>)``
after ``config(target_platform="rk3588")`` with neutral mean/std (0 and 1: no preprocessing folded
in), built with ``build(do_quantization=False)``, and run by ``init_runtime()`` without a target,
which is the toolkit's x86 simulator of the NPU. Inputs are given as NCHW
(``inference(data_format="nchw")`` for 4-D inputs; other ranks as they are); outputs come back in
the ONNX layout, as float32.

**Precision.** Without quantization the RK3588 computes in **float16** (``config(float_dtype=...)``
accepts ``float16``, ``bfloat16`` and ``tfloat32``; the RK3588 builder refuses all but float16), so
outputs match ONNX Runtime's float32 only to float16 accuracy: :data:`TOLERANCES` (used by
``--runtime rknn``) are float16-sized, not the 1e-3 of the float32 toolchains.

**Placement.** The builder prints its "Network Layer Information Table": every layer with its
``Target`` (NPU or CPU). The layers placed on the CPU (besides the input/output operators) and the
builder's ``Unkown op target`` / ``Force layout to native`` messages are collected in
``Compiled.notes``; the whole build log is ``rknn_build.log`` in the work directory (an artifact).
The simulator does not time the NPU (``eval_perf`` needs a board): its latency says nothing.

Install: ``.ci/toolchains/rknn.sh VENV`` (rknn-toolkit2 2.5.0 pins numpy <= 1.26.4, onnx <= 1.18,
protobuf <= 4.25.4 and torch <= 2.4, so it lives in a venv of its own) and
``DECONV2SUB_RKNN_PYTHON=VENV/bin/python``: then :func:`compile` runs it in a worker process there
(:mod:`deconv2sub.toolchains.worker`).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Dict, List, Mapping, Optional

import numpy as np

from . import Compiled, ToolchainError
from .worker import compile_here_or_in, unavailable_here_or_in

NAME = "rknn"
#: an interpreter whose environment has rknn-toolkit2 (used when this one has not)
PYTHON_ENV = "DECONV2SUB_RKNN_PYTHON"
#: the SoC the builder targets (``config(target_platform=...)``)
PLATFORM_ENV = "DECONV2SUB_RKNN_PLATFORM"
DEFAULT_PLATFORM = "rk3588"
INSTALL_HINT = f"run .ci/toolchains/rknn.sh VENV and set {PYTHON_ENV}=VENV/bin/python"
#: (rtol, atol) for ``--runtime rknn``: the NPU computes in float16 (unit roundoff 4.9e-4), and a
#: few layers of float16 activations and weights put ~1e-3 relative on an output
TOLERANCES = (1e-2, 1e-2)

#: a layer row of the builder's Network Layer Information Table: ID, OpType, DataType, Target
_LAYER_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(CPU|NPU\S*|GPU)\s+.*\s(\S+)\s*$")
_PLACEMENT_MESSAGES = ("Unkown op target", "Unknown op target", "Force layout to native")


def _local_reason() -> Optional[str]:
    """``None`` when rknn-toolkit2's API imports in this interpreter, else why not."""
    try:
        from rknn.api import RKNN  # noqa: F401
    except Exception as err:  # noqa: BLE001 - ImportError (torch is imported at top level), ...
        return f"rknn-toolkit2 is not importable ({type(err).__name__}: {err}); {INSTALL_HINT}"
    return None


def unavailable_reason() -> Optional[str]:
    """``None`` when RKNN can be used here or through ``DECONV2SUB_RKNN_PYTHON``, else why not."""
    return unavailable_here_or_in(_local_reason(), PYTHON_ENV, __name__)


def version() -> str:
    """rknn-toolkit2's version where it is importable here (``""`` otherwise)."""
    try:
        from importlib.metadata import version as dist_version

        return f"rknn-toolkit2 {dist_version('rknn-toolkit2')}"
    except Exception:  # noqa: BLE001 - not installed here (it may be in the worker's venv)
        return ""


def placement_notes(log: str) -> List[str]:
    """What the build log says about layers the NPU does not run.

    Returns:
        One line per CPU layer of the Network Layer Information Table (input/output operators
        excluded) and per placement message.
    """
    notes: List[str] = []
    in_table = False
    for raw in log.splitlines():
        line = raw.split("] ", 1)[1] if raw.startswith(("D RKNN:", "E RKNN:", "W RKNN:")) else raw
        if "Network Layer Information Table" in line:
            in_table = True
            continue
        if any(m in line for m in _PLACEMENT_MESSAGES):
            note = line.strip()
            if note not in notes:
                notes.append(note)
            continue
        if in_table:
            if "end: rknn::" in line:
                in_table = False
                continue
            row = _LAYER_ROW.match(line)
            if row and row.group(4) == "CPU" and row.group(2) not in ("InputOperator",
                                                                      "OutputOperator"):
                notes.append(f"on CPU: {row.group(2)} {row.group(5)}")
    return notes


def estimated_cycles(log: str) -> int:
    """The builder's own estimate of a model's cycles.

    The sum of the layer table's ``Total`` column (``Cycles(DDR/NPU/Total)``): a static model of
    the NPU, not a measurement; CPU layers count 0.
    """
    total, in_table = 0, False
    for raw in log.splitlines():
        if "Network Layer Information Table" in raw:
            in_table = True
        elif in_table and "end: rknn::" in raw:
            in_table = False
        elif in_table:
            cycles = re.search(r"\s(\d+)/(\d+)/(\d+)\s", raw)
            if cycles and _LAYER_ROW.match(raw.split("] ", 1)[-1]):
                total += int(cycles.group(3))
    return total


def _key_line(text: str, fallback: str) -> str:
    """The builder's key message: its first error line (``E ...``), else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("E ") or "Error" in ln:
            return re.sub(r"\x1b\[[0-9;]*m", "", ln)
    return re.sub(r"\x1b\[[0-9;]*m", "", lines[-1]) if lines else fallback


class _CapturedFds:
    """Sends file descriptors 1 and 2 (the toolkit's C++ chatter) to ``path`` while active.

    It also works in ``path``'s directory (``load_onnx`` writes its ``check*.onnx`` files into the
    current directory).
    """

    def __init__(self, path: str):
        """Chatter and ``check*.onnx`` files go to ``path`` and its folder."""
        self.path = path

    def __enter__(self):
        self._cwd = os.getcwd()
        os.chdir(os.path.dirname(os.path.abspath(self.path)))
        sys.stdout.flush()
        sys.stderr.flush()
        self._log = open(self.path, "ab")
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._log.fileno(), 1)
        os.dup2(self._log.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._log.close()
        os.chdir(self._cwd)
        return False


class RknnCompiled(Compiled):
    """An RKNN model built for the NPU, loaded in the toolkit's simulator."""

    def __init__(self, rknn, input_names: List[str], input_ranks: List[int],
                 output_names: List[str], artifacts: List[str], notes: List[str], log: str):
        """Wraps a built and loaded RKNN object, with its log and notes."""
        self._rknn = rknn
        self._ranks = input_ranks
        self._log = log
        self.input_names = input_names
        self.output_names = output_names
        self.artifacts = artifacts
        #: layers the builder placed on the CPU, and its placement messages (see the module doc)
        self.notes = notes

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One simulator inference on NCHW float32 feeds; outputs as float32."""
        args = [np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names]
        with _CapturedFds(self._log):  # "nchw" applies to 4-D inputs only; others pass as they are
            outs = self._rknn.inference(inputs=args, data_format=["nchw"] * len(args))
        if outs is None:
            raise ToolchainError("RKNN inference failed: "
                                 + _key_line(_tail(self._log), "no outputs"))
        if len(outs) != len(self.output_names):
            raise ToolchainError(f"RKNN returned {len(outs)} outputs, the model has "
                                 f"{len(self.output_names)}")
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs)}

    def close(self) -> None:
        """Release the simulator."""
        if self._rknn is not None:
            with _CapturedFds(self._log):
                self._rknn.release()
            self._rknn = None


def _tail(path: str, size: int = 20000) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - size))
        return f.read().decode(errors="replace")


def compile_here(model_path: str, input_shapes: Mapping[str, List[int]],
                 workdir: str) -> RknnCompiled:
    """Load, build for the NPU and start the simulator in this interpreter."""
    import onnx
    from rknn.api import RKNN

    os.makedirs(workdir, exist_ok=True)
    model_path = os.path.abspath(model_path)
    log = os.path.join(os.path.abspath(workdir), "rknn_build.log")
    open(log, "w").close()
    model = onnx.load(model_path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    outputs = [o.name for o in model.graph.output]
    missing = [n for n in inputs if n not in input_shapes]
    if missing:
        raise ToolchainError(f"RKNN needs a static shape for input {missing[0]!r}")
    shapes = [[int(d) for d in input_shapes[n]] for n in inputs]
    platform = os.environ.get(PLATFORM_ENV, DEFAULT_PLATFORM)
    with _CapturedFds(log):
        rknn = RKNN(verbose=True)
        steps = [
            # mean/std left unset: the toolkit then uses 0 and 1 for every input (no preprocessing)
            ("config", lambda: rknn.config(target_platform=platform)),
            ("load_onnx", lambda: rknn.load_onnx(model=model_path, inputs=inputs,
                                                 input_size_list=shapes)),
            ("build", lambda: rknn.build(do_quantization=False)),
            ("init_runtime", lambda: rknn.init_runtime()),
        ]
        failed = None
        for what, step in steps:
            try:
                ret = step()
            except Exception as err:  # noqa: BLE001 - the toolkit raises many types
                failed = (what, _key_line(str(err), type(err).__name__))
                break
            if ret not in (0, None):
                failed = (what, f"returned {ret}")
                break
        if failed:
            rknn.release()
    if failed:
        what, fallback = failed
        raise ToolchainError(f"RKNN {what} failed: " + _key_line(_tail(log), fallback))
    with open(log, errors="replace") as f:
        notes = placement_notes(f.read())
    return RknnCompiled(rknn, inputs, [len(s) for s in shapes], outputs, [log], notes, log)


def compile(model_path: str, input_shapes: Mapping[str, List[int]], workdir: str) -> Compiled:
    """Build with RKNN here, or in ``DECONV2SUB_RKNN_PYTHON``'s environment when not importable."""
    return compile_here_or_in(_local_reason(), PYTHON_ENV, __name__, compile_here,
                              model_path, input_shapes, workdir)
