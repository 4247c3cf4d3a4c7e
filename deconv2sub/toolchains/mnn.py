"""MNN (Alibaba's inference engine): ONNX -> MNN's converter -> ``.mnn`` -> ``MNN.nn`` module.

The module runs on the CPU backend, fp32 (``precision: high``), 2 threads.

Install (PyPI): ``pip install MNN`` (``.ci/toolchains/mnn.sh``). The package's ``mnnconvert``
console script and ``MNN.tools`` import a telemetry logger that pip-installs a package at run time
and posts to a server, so neither is used: the converter is called as the native ``_tools``
extension's ``mnnconvert(argv)``, in a child process (a converter crash is an error message, its
chatter stays off stdout).

The model keeps its ONNX layout (NCHW) and may keep dynamic dims; the module is fed the static
shapes given. Outputs are converted back to NCHW from MNN's internal NC4HW4 before reading.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from . import Compiled, ToolchainError
from .native import captured_fds, graph_io, key_message, python_argv, run_converter

NAME = "mnn"

#: threads MNN runs with (the project measures at 2 threads)
THREADS = 2

#: how to install what is missing
INSTALL_HINT = "pip install MNN (or .ci/toolchains/mnn.sh VENV)"

#: runs the native converter with argv[1:] as its command line (argv[0] is the program name)
_CONVERT_CODE = "import sys, _tools; _tools.mnnconvert(['mnnconvert'] + sys.argv[1:])"

#: the converter's line when it has written a model
CONVERT_OK = "Converted Success"


def unavailable_reason() -> Optional[str]:
    """None when MNN's runtime and its converter extension are importable, else what is missing."""
    if importlib.util.find_spec("MNN") is None:
        return f"the MNN Python package is not installed ({INSTALL_HINT})"
    if importlib.util.find_spec("_tools") is None:
        return f"MNN's converter extension (_tools) is missing ({INSTALL_HINT})"
    return None


def convert(model_path: str, workdir: str) -> str:
    """Run MNN's converter on ``model_path``; return the ``.mnn`` path in ``workdir``."""
    os.makedirs(workdir, exist_ok=True)
    out = os.path.join(workdir, "model.mnn")
    if os.path.exists(out):
        os.remove(out)
    args = ["-f", "ONNX", "--modelFile", os.path.abspath(model_path), "--MNNModel", out,
            "--bizCode", "deconv2sub"]
    text = run_converter(python_argv(_CONVERT_CODE, args), "MNN's converter")
    with open(os.path.join(workdir, "mnnconvert.log"), "w") as f:
        f.write(text)
    if CONVERT_OK not in text or not os.path.isfile(out) or os.path.getsize(out) == 0:
        raise ToolchainError("MNN's converter failed: " + key_message(text, "no model written"))
    return out


def op_types(mnn_path: str, workdir: str) -> List[str]:
    """The op types of a ``.mnn`` model, in order (the converter's JSON dump of it)."""
    dump = os.path.join(workdir, "model.mnn.json")
    args = ["-f", "MNN", "--modelFile", mnn_path, "--JsonFile", dump]
    run_converter(python_argv(_CONVERT_CODE, args), "MNN's converter (JSON dump)")
    with open(dump) as f:
        return [op.get("type", "?") for op in json.load(f).get("oplists", [])]


class MnnModel(Compiled):
    """A ``.mnn`` model loaded as an ``MNN.nn`` module (CPU, fp32, 2 threads)."""

    def __init__(self, module, mnn_path: str, inputs: List[str], outputs: List[str],
                 ops: List[str]):
        """Wraps a loaded ``MNN.nn`` module and what its converter reported."""
        self.module = module
        self.input_names = inputs
        self.output_names = outputs
        self.artifacts = [mnn_path]
        #: MNN op types, in model order (Input and ConvertTensor layout ops included)
        self.ops = ops

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One forward pass on NCHW float32 feeds; NCHW float32 outputs."""
        import MNN.expr as F

        arrays = [np.ascontiguousarray(feeds[n], dtype=np.float32) for n in self.input_names]
        values = [F.const(a, list(a.shape), F.NCHW) for a in arrays]
        outs = self.module.forward(values)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        results = {}
        for name, var in zip(self.output_names, outs):
            var = F.convert(var, F.NCHW)
            results[name] = np.array(var.read(), dtype=np.float32, copy=True)
        return results


def load(mnn_path: str, inputs: List[str], outputs: List[str], ops: List[str]) -> MnnModel:
    """Load ``mnn_path`` for the CPU backend in fp32; MNN's own message when it refuses."""
    with captured_fds() as log:
        try:
            import MNN.nn as nn

            config = {"backend": "CPU", "precision": "high", "numThread": THREADS}
            runtime = nn.create_runtime_manager((config,))
            module = nn.load_module_from_file(mnn_path, inputs, outputs,
                                              runtime_manager=runtime)
        except Exception as exc:  # MNN raises plain Exceptions from C++
            module, error = None, str(exc)
        else:
            error = ""
    if module is None:  # MNN's own line (e.g. "Can't find output y") beats the Python wrapper's
        raise ToolchainError("MNN could not load the converted model: "
                             + key_message(log.text, error or "no module"))
    return MnnModel(module, mnn_path, inputs, outputs, ops)


def compile(model_path: str, input_shapes: Mapping[str, Sequence[int]], workdir: str) -> MnnModel:
    """Convert ``model_path`` with MNN's converter and load it (``input_shapes``: fed at run)."""
    reason = unavailable_reason()
    if reason:
        raise ToolchainError(reason)
    inputs, outputs, _ = graph_io(model_path)
    missing = [n for n in inputs if n not in input_shapes]
    if missing:
        raise ToolchainError(f"MNN needs a static shape for input(s) {missing}")
    mnn_path = convert(model_path, workdir)
    return load(mnn_path, inputs, outputs, op_types(mnn_path, workdir))
