"""ONNX Runtime: :class:`OrtRunner`, the CUDA probe with its reported CPU fallback, ORT's errors.

Two facts about ONNX Runtime shape this module:

* ``onnxruntime-gpu`` lists ``CUDAExecutionProvider`` as *available* on machines without a GPU
  or CUDA libraries, then silently falls back to CPU at session creation (after printing
  errors). Only ``session.get_providers()`` tells the truth, so we probe once, quietly, and
  cache the answer: a failed CUDA init is slow and noisy, and nothing changes within a process.
* Kernel coverage depends on the provider and dtype (CPU has no float64 ConvTranspose), and
  ORT reports it as "Could not find an implementation for ConvTranspose(11) node with name ''",
  which we translate into something a user can act on.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import threading
from typing import Iterator, List, Optional, Tuple

import numpy as np
import onnx
from onnx import helper

from ..errors import InputError, NoKernelError, RuntimeUnavailableError
from .base import ModelSource, Runner, RunnerOptions, RuntimeInfo, one_line, source_specs

__all__ = ["ORT_QUIET", "OrtRunner", "create_ort", "cuda_status"]

_CUDA_EP, _CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"

_ort_module = None

#: ONNX Runtime log severity that prints nothing: FATAL. A node that fails to run logs its error at
#: ERROR (3) on stderr, in colour, before the same text comes back as the exception we report; both
#: the default logger and every session logger are set to this.
ORT_QUIET = 4


def _ort():
    """Import onnxruntime once and quieten its default logger (CUDA fallback noise)."""
    global _ort_module
    if _ort_module is None:
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeUnavailableError(
                "ONNX Runtime is not installed: pip install onnxruntime") from None
        onnxruntime.set_default_logger_severity(ORT_QUIET)
        _ort_module = onnxruntime
    return _ort_module


@contextlib.contextmanager
def _captured_output() -> Iterator[io.StringIO]:
    """Capture everything written to stdout/stderr, by Python *and* native code.

    The yielded buffer is filled on exit. ORT's CUDA loader prints from C++ and from ``print()``;
    we want that text as the failure reason, not on the user's terminal.
    """
    buf = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp, contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(buf))
        stack.enter_context(contextlib.redirect_stderr(buf))
        saved = []
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    getattr(sys, "__stdout__" if fd == 1 else "__stderr__").flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(tmp.fileno(), fd)
        except OSError:  # no usable fds (embedded interpreter): capture Python output only
            pass
        try:
            yield buf
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            buf.write(tmp.read().decode("utf-8", "replace"))


_cuda_lock = threading.Lock()
_cuda_probe: Optional[Tuple[bool, Optional[str]]] = None


def cuda_status() -> Tuple[bool, Optional[str]]:
    """``(True, None)`` if ORT's CUDA provider really runs here, else ``(False, reason)``.

    Probed once per process with a one-node model; the result is cached.
    """
    global _cuda_probe
    with _cuda_lock:
        if _cuda_probe is None:
            _cuda_probe = _probe_cuda()
        return _cuda_probe


def _probe_cuda() -> Tuple[bool, Optional[str]]:
    ort = _ort()
    if _CUDA_EP not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA support (install onnxruntime-gpu)"
    node = helper.make_node("Relu", ["x"], ["y"])
    vi = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([node], "cuda_probe", vi[:1], vi[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    error = None
    with _captured_output() as out:
        if hasattr(ort, "preload_dlls"):
            with contextlib.suppress(Exception):
                ort.preload_dlls()
        try:
            session = ort.InferenceSession(model.SerializeToString(),
                                           providers=[_CUDA_EP, _CPU_EP])
            if _CUDA_EP in session.get_providers():
                return True, None
        except Exception as e:
            error = one_line(e)
    return False, _cuda_failure_reason(out.getvalue()) or error or "CUDA could not be initialised"


def _cuda_failure_reason(text: str) -> Optional[str]:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    m = re.search(r"with error: (.+)", text)
    if m:
        return m.group(1).strip()
    for line in text.splitlines():
        if re.search(r"CUDA failure|cudaError|no CUDA-capable device", line, re.IGNORECASE):
            return re.sub(r"^.*\] ", "", line).strip()[:300]
    return None


_NO_KERNEL = re.compile(
    r"Could not find an implementation for (\S+?)\(\d+\) node with name '([^']*)'")


def _ort_error(prefix: str, e: BaseException, source: ModelSource, device: str) -> InputError:
    """``prefix: <ORT's message on one line>`` as InputError.

    A missing kernel becomes a NoKernelError naming the op and dtype (callers treat "cannot run
    here" differently).
    """
    message = one_line(e)
    m = _NO_KERNEL.search(message)
    if not m:
        return InputError(f"{prefix}: {message}")
    op, node = m.groups()
    types = _node_types(source, op, node)
    where = f" (node '{node}')" if node else ""
    return NoKernelError(f"{prefix}: ONNX Runtime ({device}) has no kernel for "
                         f"{op}({'/'.join(types) or '?'}){where}")


def _node_types(source: ModelSource, op: str, node_name: str) -> List[str]:
    """Element types of the first typed input of the matching node(s), e.g. ``["float64"]``."""
    try:
        model = source.metadata()
        with contextlib.suppress(Exception):
            model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return []
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    found = set()
    for n in g.node:
        if n.op_type == op and (not node_name or n.name == node_name):
            elem = next((types[i] for i in n.input if types.get(i)), None)
            if elem:
                with contextlib.suppress(Exception):
                    found.add(np.dtype(helper.tensor_dtype_to_np_dtype(elem)).name)
    return sorted(found)


class OrtRunner(Runner):
    """A model in an ONNX Runtime session (``session``: the ``InferenceSession``)."""

    def __init__(self, session, source: ModelSource, info: RuntimeInfo, what: str):
        """Wrap ``session``, loaded from ``source`` (kept for error messages)."""
        outputs = [o.name for o in session.get_outputs()]
        super().__init__(info, source_specs(source, info.runtime, what), outputs, what,
                         source.keepalive)
        self.session = session
        self._source = source

    def run(self, feeds, output_names=None):
        """Run once; ORT's failures as InputError (NoKernelError for a missing kernel)."""
        names = self._wanted(output_names)
        try:
            results = self.session.run(names, dict(feeds))
        except Exception as e:
            raise self._error(e) from None
        return dict(zip(names, results))

    def run_for_timing(self, feeds):
        """Run once, all outputs, results discarded (see :meth:`Runner.run_for_timing`)."""
        try:
            self.session.run(None, feeds)
        except Exception as e:
            raise self._error(e) from None

    def _error(self, e: BaseException) -> InputError:
        return _ort_error(f"onnxruntime failed to run {self.what}", e, self._source,
                          self.info.device)


def create_ort(source: ModelSource, what: str, options: RunnerOptions) -> OrtRunner:
    """Load ``source`` in an ONNX Runtime session.

    CUDA when it truly works (:func:`cuda_status`) and was asked for, else CPU, with a note when
    CUDA was asked for; ``options.require_cuda`` turns that fallback into RuntimeUnavailableError.
    """
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = ORT_QUIET  # a failing node logs at ERROR (3) before raising
    level = ort.GraphOptimizationLevel
    so.graph_optimization_level = (level.ORT_ENABLE_ALL if options.optimize
                                   else level.ORT_DISABLE_ALL)
    if options.threads:
        so.intra_op_num_threads = options.threads
    if not options.spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")

    note = detail = None
    want_cuda = options.provider in ("auto", "cuda")
    cuda_ok, reason = cuda_status() if want_cuda else (False, None)
    if want_cuda and not cuda_ok:
        if options.require_cuda:
            raise RuntimeUnavailableError(f"CUDA execution provider is not available: {reason}")
        note, detail = f"{_CUDA_EP} unavailable: fell back to CPU", reason
    providers = [_CUDA_EP, _CPU_EP] if cuda_ok else [_CPU_EP]
    device = "CUDA" if cuda_ok else "CPU"

    model = source.data if source.data is not None else source.path
    try:
        # on a failure ORT's Python layer prints "EP Error ... retrying" on stdout (our --json)
        with contextlib.redirect_stdout(io.StringIO()):
            session = ort.InferenceSession(model, so, providers=providers)
    except Exception as e:
        raise _ort_error(f"onnxruntime cannot load {what}", e, source, device) from None
    actual = session.get_providers()
    if cuda_ok and _CUDA_EP not in actual:  # probe passed, but this session still fell back
        if options.require_cuda:
            raise RuntimeUnavailableError(
                f"CUDA execution provider is not available: {what} fell back to CPU")
        device, note = "CPU", f"{_CUDA_EP} unavailable: fell back to CPU"
    info = RuntimeInfo("onnxruntime", device, list(actual), note, ort.__version__, detail)
    return OrtRunner(session, source, info, what)
