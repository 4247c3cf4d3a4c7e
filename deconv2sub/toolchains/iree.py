"""IREE: ``iree-import-onnx`` to MLIR, ``iree-compile`` for the host CPU (llvm-cpu), iree.runtime.

The model's inputs are first fixed to the static ``input_shapes`` (stale intermediate shapes are
dropped and ONNX shape inference re-run, so the importer sees static shapes throughout), then:

    iree-import-onnx model.static.onnx -o model.mlir
    iree-compile model.mlir --iree-hal-target-backends=llvm-cpu --iree-llvmcpu-target-cpu=host
        -o model.vmfb

and the ``.vmfb`` runs in ``iree.runtime`` on the ``local-task`` driver (``DECONV2SUB_IREE_DRIVER``
= ``local-sync`` for a single thread). Everything computes in float32 (IREE demotes nothing by
default). The local-task pool's size is a runtime flag, ``--task_topology_max_group_count=N``: set
``DECONV2SUB_IREE_THREADS=N`` before the first compile in the process to apply it.

Install: ``pip install iree-base-compiler iree-base-runtime`` (3.13 measured; no pins that conflict
with the project's onnx / numpy), or its own venv via ``.ci/toolchains/iree.sh VENV`` and
``DECONV2SUB_IREE_PYTHON=VENV/bin/python`` (then :func:`compile` runs it in a worker process there,
:mod:`deconv2sub.toolchains.worker`). Known bug: DepthToSpace in CRD mode is miscompiled whenever
``C / b^2 != b`` (iree-org/iree#24179); see ``tests/toolchain_repros/iree/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Dict, List, Mapping, Optional

import numpy as np

from . import Compiled, ToolchainError
from .worker import compile_here_or_in, unavailable_here_or_in

NAME = "iree"
#: an interpreter whose environment has iree-base-compiler and iree-base-runtime
PYTHON_ENV = "DECONV2SUB_IREE_PYTHON"
DRIVER_ENV = "DECONV2SUB_IREE_DRIVER"
THREADS_ENV = "DECONV2SUB_IREE_THREADS"
INSTALL_HINT = (f"pip install iree-base-compiler iree-base-runtime, or run .ci/toolchains/iree.sh "
                f"VENV and set {PYTHON_ENV}=VENV/bin/python")
COMPILE_FLAGS = ["--iree-hal-target-backends=llvm-cpu", "--iree-llvmcpu-target-cpu=host"]

_flags_set = False


def _tool(name: str) -> Optional[str]:
    """The path of an IREE command-line tool of this interpreter's environment (or on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else shutil.which(name)


def _local_reason() -> Optional[str]:
    """``None`` when IREE's compiler tools and runtime are usable in this interpreter."""
    try:
        import iree.compiler  # noqa: F401
        import iree.runtime  # noqa: F401
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken native library
        return f"IREE is not importable ({type(err).__name__}: {err}); {INSTALL_HINT}"
    for tool in ("iree-import-onnx", "iree-compile"):
        if _tool(tool) is None:
            return f"{tool} not found beside {sys.executable} nor on PATH; {INSTALL_HINT}"
    return None


def unavailable_reason() -> Optional[str]:
    """``None`` when IREE can be used here or through ``DECONV2SUB_IREE_PYTHON``, else why not."""
    return unavailable_here_or_in(_local_reason(), PYTHON_ENV, __name__)


def static_model(model_path: str, input_shapes: Mapping[str, List[int]], out_path: str):
    """Save the model with its inputs fixed to ``input_shapes`` and shapes re-inferred."""
    import onnx

    model = onnx.load(model_path)
    for inp in model.graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            shape = list(input_shapes[inp.name])
            if len(shape) != len(dims):
                raise ToolchainError(f"input {inp.name!r} has rank {len(dims)}, "
                                     f"shape {shape} given")
            for dim, size in zip(dims, shape):
                dim.Clear()
                dim.dim_value = int(size)
    del model.graph.value_info[:]
    declared = {o.name: onnx.TypeProto.FromString(o.type.SerializeToString())
                for o in model.graph.output}
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as err:  # noqa: BLE001 - inference errors come in several types
        raise ToolchainError(f"ONNX shape inference failed: {err}") from None
    for out in model.graph.output:  # not inferred (an op ONNX does not know): keep the declared
        if not out.type.tensor_type.HasField("shape"):
            out.type.CopyFrom(declared[out.name])
    onnx.save(model, out_path)
    return model


def _key_line(text: str, fallback: str) -> str:
    """The tool's key message: the first line that says ``error``, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower():
            return ln
    return lines[-1] if lines else fallback


def _run_tool(args: List[str], what: str) -> None:
    """Run one IREE tool, its chatter captured; failure -> ToolchainError with its key line."""
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolchainError(f"{what} failed: " + _key_line(done.stderr + done.stdout,
                                                            f"exit code {done.returncode}"))


def _set_runtime_flags() -> None:
    """Apply ``DECONV2SUB_IREE_THREADS`` once per process, before the first device is created."""
    global _flags_set
    if _flags_set:
        return
    import iree.runtime as rt

    threads = os.environ.get(THREADS_ENV)
    if threads:
        rt.flags.parse_flags(f"--task_topology_max_group_count={int(threads)}")
    _flags_set = True


class IreeCompiled(Compiled):
    """A ``.vmfb`` loaded in iree.runtime on the local CPU driver."""

    def __init__(self, vmfb: str, input_names: List[str], output_names: List[str],
                 artifacts: List[str], driver: str):
        """Loads ``vmfb`` on ``driver`` and finds its one entry function."""
        import iree.runtime as rt

        _set_runtime_flags()
        self.input_names = input_names
        self.output_names = output_names
        self.artifacts = artifacts
        config = rt.Config(driver)
        self._context = rt.SystemContext(config=config)
        vm_module = rt.VmModule.mmap(config.vm_instance, vmfb)
        self._context.add_vm_module(vm_module)
        names = [n for n in vm_module.function_names
                 if not n.startswith("__") and "$" not in n]
        if len(names) != 1:
            raise ToolchainError(f"expected one entry function in {vmfb}, found {names}")
        self._entry = self._context.modules[vm_module.name][names[0]]

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One call of the entry function; outputs copied to the host."""
        args = [np.ascontiguousarray(feeds[n]) for n in self.input_names]
        result = self._entry(*args)
        outs = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(outs) != len(self.output_names):
            raise ToolchainError(f"IREE returned {len(outs)} outputs, the model has "
                                 f"{len(self.output_names)}")
        return {n: np.asarray(o.to_host()) for n, o in zip(self.output_names, outs)}


def compile_here(model_path: str, input_shapes: Mapping[str, List[int]],
                 workdir: str) -> IreeCompiled:
    """Import, compile and load in this interpreter's environment."""
    os.makedirs(workdir, exist_ok=True)
    static = os.path.join(workdir, "model.static.onnx")
    mlir = os.path.join(workdir, "model.mlir")
    vmfb = os.path.join(workdir, "model.vmfb")
    model = static_model(model_path, input_shapes, static)
    _run_tool([_tool("iree-import-onnx"), static, "-o", mlir], "iree-import-onnx")
    _run_tool([_tool("iree-compile"), mlir, *COMPILE_FLAGS, "-o", vmfb], "iree-compile")
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    outputs = [o.name for o in model.graph.output]
    driver = os.environ.get(DRIVER_ENV, "local-task")
    try:
        return IreeCompiled(vmfb, inputs, outputs, [static, mlir, vmfb], driver)
    except ToolchainError:
        raise
    except Exception as err:  # noqa: BLE001 - runtime load errors
        raise ToolchainError(f"iree.runtime cannot load {vmfb}: {_key_line(str(err), '?')}") \
            from None


def compile(model_path: str, input_shapes: Mapping[str, List[int]], workdir: str) -> Compiled:
    """Compile with IREE here, or in ``DECONV2SUB_IREE_PYTHON``'s environment when not here."""
    return compile_here_or_in(_local_reason(), PYTHON_ENV, __name__, compile_here,
                              model_path, input_shapes, workdir)
