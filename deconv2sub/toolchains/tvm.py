"""Apache TVM: the Relax ONNX frontend, ``tvm.compile`` for the host CPU (LLVM), the Relax VM.

The model is imported with ``tvm.relax.frontend.onnx.from_onnx`` at the static ``input_shapes``
(``shape_dict``; weights embedded as constants), compiled with TVM's default Relax pipeline for an
LLVM target of the host CPU (``{"kind": "llvm", "mcpu": <LLVM's host CPU name>}``: LLVM 22 in the
wheel refuses ``mcpu=native``), no tuning, and run on ``relax.VirtualMachine`` on ``tvm.cpu()``.
Everything computes in float32. TVM's CPU thread pool reads ``TVM_NUM_THREADS`` once, at first use.

Install: ``pip install apache-tvm`` (0.27 measured; no pins that conflict with the project's onnx /
numpy, so it can live in the project's venv), or its own venv via ``.ci/toolchains/tvm.sh VENV``
and ``DECONV2SUB_TVM_PYTHON=VENV/bin/python``: then :func:`compile` runs it in a worker process
there (:mod:`deconv2sub.toolchains.worker`).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Dict, List, Mapping, Optional

import numpy as np

from . import Compiled, ToolchainError
from .worker import compile_here_or_in, unavailable_here_or_in

NAME = "tvm"
#: an interpreter whose environment has apache-tvm (used when this one has not)
PYTHON_ENV = "DECONV2SUB_TVM_PYTHON"
INSTALL_HINT = (f"pip install apache-tvm, or run .ci/toolchains/tvm.sh VENV and set "
                f"{PYTHON_ENV}=VENV/bin/python")


def _local_reason() -> Optional[str]:
    """``None`` when TVM's Relax ONNX frontend imports in this interpreter, else why not."""
    try:
        import tvm  # noqa: F401
        from tvm.relax.frontend.onnx import from_onnx  # noqa: F401
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken native library
        return f"apache-tvm is not importable ({type(err).__name__}: {err}); {INSTALL_HINT}"
    return None


def unavailable_reason() -> Optional[str]:
    """``None`` when TVM can be used here or through ``DECONV2SUB_TVM_PYTHON``, else why not."""
    return unavailable_here_or_in(_local_reason(), PYTHON_ENV, __name__)


def host_target():
    """The LLVM target of this machine's CPU (``mcpu`` = LLVM's name for the host CPU)."""
    import tvm
    from tvm.target import codegen

    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


def _key_line(text: str, fallback: str) -> str:
    """TVM's key message: its first line, plus the offending call where codegen names one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return fallback
    if "Offending call:" in lines[:-1]:
        return f"{lines[0]} ({lines[lines.index('Offending call:') + 1]})"
    return lines[0]


def import_onnx(model_path: str, input_shapes: Optional[Mapping[str, List[int]]]):
    """The Relax IRModule of an ONNX file; ``input_shapes=None`` keeps the symbolic dims."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(model_path)
    shape_dict = None if input_shapes is None else {k: list(v) for k, v in input_shapes.items()}
    return from_onnx(model, shape_dict=shape_dict), model


class TvmCompiled(Compiled):
    """A Relax VM executable of one ONNX model."""

    def __init__(self, vm, input_names: List[str], output_names: List[str], artifacts: List[str]):
        """Wraps a Relax VM with its ONNX input/output names."""
        self._vm = vm
        self.input_names = input_names
        self.output_names = output_names
        self.artifacts = artifacts

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One call of ``main`` on the VM; outputs as numpy arrays."""
        import tvm

        args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        result = self._vm["main"](*args)
        outs = [result] if hasattr(result, "numpy") else list(result)
        if len(outs) != len(self.output_names):
            raise ToolchainError(f"TVM returned {len(outs)} outputs, the model has "
                                 f"{len(self.output_names)}")
        return {n: o.numpy() for n, o in zip(self.output_names, outs)}


def graph_names(model) -> tuple:
    """(input names without initializers, output names) of an ONNX model, in order."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    return inputs, [o.name for o in model.graph.output]


def compile_here(model_path: str, input_shapes: Optional[Mapping[str, List[int]]],
                 workdir: str) -> TvmCompiled:
    """Import, build and load in this interpreter (``input_shapes=None``: symbolic dims kept)."""
    import tvm
    from tvm import relax

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            mod, model = import_onnx(model_path, input_shapes)
            os.makedirs(workdir, exist_ok=True)
            ir_path = os.path.join(workdir, "model.relax.py")
            with open(ir_path, "w") as f:
                f.write(mod.script(show_meta=False))
            executable = tvm.compile(mod, target=host_target())
            vm = relax.VirtualMachine(executable, tvm.cpu())
    except Exception as err:  # noqa: BLE001 - TVM raises many types; one line for all
        raise ToolchainError("TVM: " + _key_line(str(err), type(err).__name__)) from None
    inputs, outputs = graph_names(model)
    return TvmCompiled(vm, inputs, outputs, [ir_path])


def compile(model_path: str, input_shapes: Optional[Mapping[str, List[int]]],
            workdir: str) -> Compiled:
    """Compile with TVM here, or in ``DECONV2SUB_TVM_PYTHON``'s environment when not importable.

    Beyond the common interface: ``input_shapes=None`` keeps the model's symbolic dims (Relax
    symbolic shapes; one executable for every shape).
    """
    return compile_here_or_in(_local_reason(), PYTHON_ENV, __name__, compile_here,
                              model_path, input_shapes, workdir)
