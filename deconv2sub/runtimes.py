"""A thin layer over inference runtimes, so that verification code runs a model the same way
on ONNX Runtime (CPU or CUDA) and OpenVINO, and further runtimes plug in as one more factory.

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
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import helper

from .errors import InputError, NoKernelError, RuntimeUnavailableError
from .inputs import TensorSpec, model_input_specs

#: deployment toolchains (modules of :mod:`deconv2sub.toolchains`): the model goes through the
#: toolchain's own converter and runs in its runtime
TOOLCHAINS = ("ncnn", "mnn", "tflite", "tvm", "iree", "rknn")
RUNTIMES = ("onnxruntime", "openvino") + TOOLCHAINS
PROVIDERS = ("auto", "cuda", "cpu")
_CUDA_EP, _CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"

# Protobuf cannot serialise a message of 2 GiB or more; such models must reach the runtime as a
# file with external data. (A module constant so that tests can exercise that path cheaply.)
_MAX_PROTO_BYTES = 2**31 - 1

ModelArg = Union[onnx.ModelProto, bytes, str, "os.PathLike[str]"]


@dataclass
class RuntimeInfo:
    """Where a model actually runs (not where it was asked to run)."""

    runtime: str  # "onnxruntime" | "openvino"
    device: str  # "CUDA" | "CPU"
    providers: List[str] = field(default_factory=list)  # ORT providers in priority order / OV devices
    note: Optional[str] = None  # e.g. "CUDAExecutionProvider unavailable: fell back to CPU"
    version: str = ""
    detail: Optional[str] = None  # why a requested device was unavailable (for --verbose output)

    def describe(self, verbose: bool = False) -> str:
        """E.g. ``onnxruntime 1.31.1 on CPU (CUDAExecutionProvider unavailable: fell back to CPU)``."""
        text = f"{self.runtime} {self.version}".rstrip() + f" on {self.device}"
        if self.note:
            text += f" ({self.note})"
        if verbose and self.detail:
            text += f": {self.detail}"
        return text


class Runner(ABC):
    """One loaded model on one runtime and device. Feeds and results are keyed by ONNX tensor name."""

    def __init__(self, info: RuntimeInfo, specs: List[TensorSpec], outputs: List[str], what: str, keepalive=None):
        self.info = info
        self.what = what
        self._specs = specs
        self._outputs = outputs
        self._keepalive = keepalive  # temp dir holding a >2 GiB model; deleted with the runner

    def input_specs(self) -> List[TensorSpec]:
        return list(self._specs)

    def output_names(self) -> List[str]:
        return list(self._outputs)

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray], output_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """Run once; returns ``{output name: array}`` for ``output_names`` (default: all)."""

    def _wanted(self, output_names: Optional[Sequence[str]]) -> List[str]:
        names = list(self._outputs if output_names is None else output_names)
        unknown = [n for n in names if n not in self._outputs]
        if unknown:
            raise InputError(f"{self.what} has no output '{unknown[0]}' (outputs: {', '.join(self._outputs)})")
        return names


# --------------------------------------------------------------------------------------------
# Model sources


@dataclass
class _Source:
    """The model as a runtime can take it: serialised bytes, or a path (required > 2 GiB)."""

    data: Optional[bytes] = None
    path: Optional[str] = None
    proto: Optional[onnx.ModelProto] = None  # graph metadata only (no external data needed)
    keepalive: Optional[tempfile.TemporaryDirectory] = None

    def metadata(self) -> onnx.ModelProto:
        if self.proto is None:
            if self.data is not None:
                self.proto = onnx.load_from_string(self.data)
            else:
                self.proto = onnx.load(self.path, load_external_data=False)
        return self.proto


def _source(model: ModelArg) -> _Source:
    if isinstance(model, onnx.ModelProto):
        if model.ByteSize() <= _MAX_PROTO_BYTES:
            return _Source(data=model.SerializeToString(), proto=model)
        tmp = tempfile.TemporaryDirectory(prefix="deconv2sub-")
        path = os.path.join(tmp.name, "model.onnx")
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # saving with external data strips the weights from the proto it is given
        onnx.save_model(copy, path, save_as_external_data=True, all_tensors_to_one_file=True, location="model.data")
        return _Source(path=path, proto=model, keepalive=tmp)
    if isinstance(model, (bytes, bytearray, memoryview)):
        return _Source(data=bytes(model))
    return _Source(path=os.fspath(model))


# --------------------------------------------------------------------------------------------
# ONNX Runtime

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
            raise RuntimeUnavailableError("ONNX Runtime is not installed: pip install onnxruntime") from None
        onnxruntime.set_default_logger_severity(ORT_QUIET)
        _ort_module = onnxruntime
    return _ort_module


@contextlib.contextmanager
def _captured_output() -> Iterator[io.StringIO]:
    """Capture everything written to stdout/stderr, by Python *and* native code, into the yielded
    buffer (filled on exit). ORT's CUDA loader prints from C++ and from ``print()``; we want that
    text as the failure reason, not on the user's terminal."""
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
            session = ort.InferenceSession(model.SerializeToString(), providers=[_CUDA_EP, _CPU_EP])
            if _CUDA_EP in session.get_providers():
                return True, None
        except Exception as e:
            error = _one_line(e)
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


def _one_line(e: BaseException, limit: int = 400) -> str:
    """The message on one line, without ORT's ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :``
    prefix. Lines are joined, not dropped: ORT puts the useful part ("index: 1 Got: 3
    Expected: 2") on the second line."""
    text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip()) or type(e).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NO_KERNEL = re.compile(r"Could not find an implementation for (\S+?)\(\d+\) node with name '([^']*)'")


def _ort_error(prefix: str, e: BaseException, source: _Source, device: str) -> InputError:
    """``prefix: <ORT's message on one line>`` as InputError; a missing kernel becomes a
    NoKernelError naming the op and dtype (callers treat "cannot run here" differently)."""
    message = _one_line(e)
    m = _NO_KERNEL.search(message)
    if not m:
        return InputError(f"{prefix}: {message}")
    op, node = m.groups()
    types = _node_types(source, op, node)
    where = f" (node '{node}')" if node else ""
    return NoKernelError(f"{prefix}: ONNX Runtime ({device}) has no kernel for {op}({'/'.join(types) or '?'}){where}")


def _node_types(source: _Source, op: str, node_name: str) -> List[str]:
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
    def __init__(self, session, source: _Source, info: RuntimeInfo, what: str):
        outputs = [o.name for o in session.get_outputs()]
        super().__init__(info, _specs(source, info.runtime, what), outputs, what, source.keepalive)
        self.session = session
        self._source = source

    def run(self, feeds, output_names=None):
        names = self._wanted(output_names)
        try:
            results = self.session.run(names, dict(feeds))
        except Exception as e:
            raise _ort_error(f"onnxruntime failed to run {self.what}", e, self._source, self.info.device) from None
        return dict(zip(names, results))


def _create_ort(source: _Source, what: str, provider: str, require_cuda: bool, optimize: bool, threads: Optional[int]):
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = ORT_QUIET  # a failing node logs at ERROR (3) before raising
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if threads:
        options.intra_op_num_threads = threads

    note = detail = None
    want_cuda = provider in ("auto", "cuda")
    cuda_ok, reason = cuda_status() if want_cuda else (False, None)
    if want_cuda and not cuda_ok:
        if require_cuda:
            raise RuntimeUnavailableError(f"CUDA execution provider is not available: {reason}")
        note, detail = f"{_CUDA_EP} unavailable: fell back to CPU", reason
    providers = [_CUDA_EP, _CPU_EP] if cuda_ok else [_CPU_EP]
    device = "CUDA" if cuda_ok else "CPU"

    model = source.data if source.data is not None else source.path
    try:
        # on a failure ORT's Python layer prints "EP Error ... retrying" on stdout (our --json)
        with contextlib.redirect_stdout(io.StringIO()):
            session = ort.InferenceSession(model, options, providers=providers)
    except Exception as e:
        raise _ort_error(f"onnxruntime cannot load {what}", e, source, device) from None
    actual = session.get_providers()
    if cuda_ok and _CUDA_EP not in actual:  # probe passed, but this session still fell back
        if require_cuda:
            raise RuntimeUnavailableError(f"CUDA execution provider is not available: {what} fell back to CPU")
        device, note = "CPU", f"{_CUDA_EP} unavailable: fell back to CPU"
    info = RuntimeInfo("onnxruntime", device, list(actual), note, ort.__version__, detail)
    return OrtRunner(session, source, info, what)


# --------------------------------------------------------------------------------------------
# OpenVINO

_OV_NOISE = re.compile(r"^(Exception from |Check '.*' failed at |FrontEnd API failed with |Summary:|To facilitate )")


def _ov_error(e: BaseException) -> str:
    """OpenVINO messages are stacks of "Exception from file:line" lines; keep the informative one."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not _OV_NOISE.match(ln.strip())]
    return re.sub(r"^-- ", "", lines[-1]) if lines else type(e).__name__


class OpenVinoRunner(Runner):
    def __init__(self, compiled, source: _Source, info: RuntimeInfo, what: str):
        graph_outputs = [o.name for o in source.metadata().graph.output]
        self._ports = []
        for port in compiled.outputs:
            names = port.get_names()
            self._ports.append((next((n for n in graph_outputs if n in names), port.get_any_name()), port))
        super().__init__(info, _specs(source, info.runtime, what), [n for n, _ in self._ports], what, source.keepalive)
        self.compiled = compiled
        self._request = compiled.create_infer_request()

    def run(self, feeds, output_names=None):
        names = self._wanted(output_names)
        try:
            results = self._request.infer(dict(feeds))
        except Exception as e:
            raise InputError(f"openvino failed to run {self.what}: {_ov_error(e)}") from None
        # Copy: result tensors are views into the request's buffers, reused by the next run.
        by_name = {name: np.array(results[port], copy=True) for name, port in self._ports}
        return {n: by_name[n] for n in names}


def _create_openvino(source: _Source, what: str, provider: str, require_cuda: bool, optimize: bool, threads: Optional[int]):
    """OpenVINO on CPU. ``optimize`` is ignored: OpenVINO always optimises. Inference precision
    is pinned to f32, because its CPU plugin may otherwise compute in bf16/f16 on capable CPUs
    and the comparison would measure that, not the rewrite."""
    if provider == "cuda" or require_cuda:
        raise RuntimeUnavailableError("OpenVINO has no CUDA device here; use onnxruntime for CUDA, or provider cpu")
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeUnavailableError("OpenVINO is not installed: pip install 'deconv2sub[openvino]'") from None
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    try:
        model = core.read_model(source.path) if source.data is None else core.read_model(model=source.data, weights=b"")
        compiled = core.compile_model(model, "CPU", config)
    except Exception as e:
        # An op OpenVINO cannot convert is "cannot run here", like a missing ORT kernel.
        error = NoKernelError if "No conversion rule found" in str(e) else InputError
        raise error(f"openvino cannot load {what}: {_ov_error(e)}") from None
    info = RuntimeInfo("openvino", "CPU", ["CPU"], None, ov.__version__.split("-")[0])
    return OpenVinoRunner(compiled, source, info, what)


# --------------------------------------------------------------------------------------------
# Deployment toolchains


class ToolchainRunner(Runner):
    """A model taken through a deployment toolchain (:mod:`deconv2sub.toolchains`): converted by the
    toolchain's own converter for the static input shapes of each run (once per distinct shape set),
    then run in the toolchain's runtime. Outputs keyed by ONNX output name, in ONNX layout."""

    def __init__(self, module, source: _Source, info: RuntimeInfo, what: str):
        outputs = [o.name for o in source.metadata().graph.output]
        self._tmp = tempfile.TemporaryDirectory(prefix=f"deconv2sub-{module.NAME}-")
        super().__init__(info, _specs(source, info.runtime, what), outputs, what, source.keepalive)
        self._module = module
        if source.path is not None:
            self._path = source.path
        else:
            self._path = os.path.join(self._tmp.name, "model.onnx")
            with open(self._path, "wb") as f:
                f.write(source.data)
        self._compiled: Dict[tuple, object] = {}

    def _compile(self, shapes: Dict[str, Tuple[int, ...]]):
        from .toolchains import ToolchainError

        key = tuple(sorted(shapes.items()))
        if key not in self._compiled:
            workdir = tempfile.mkdtemp(prefix="shape-", dir=self._tmp.name)
            try:
                self._compiled[key] = self._module.compile(self._path, dict(shapes), workdir)
            except ToolchainError as e:
                # the toolchain cannot take this model: "cannot run here", like a missing kernel
                raise NoKernelError(f"{self.info.runtime} cannot convert {self.what}: {e}") from None
        return self._compiled[key]

    def run(self, feeds, output_names=None):
        names = self._wanted(output_names)
        batches = {int(np.shape(v)[0]) for v in feeds.values() if np.ndim(v) > 0}
        max_batch = getattr(self._module, "MAX_BATCH", None)
        if max_batch == 1 and len(batches) == 1 and batches != {1}:
            # a toolchain without a batch axis (ncnn): one sample at a time, outputs stacked
            (n,) = batches
            parts = [self._run_once({k: v[i:i + 1] for k, v in feeds.items()}, names) for i in range(n)]
            return {name: np.concatenate([p[name] for p in parts], axis=0) for name in names}
        return self._run_once(feeds, names)

    def _run_once(self, feeds, names):
        from .toolchains import ToolchainError

        compiled = self._compile({k: tuple(np.shape(v)) for k, v in feeds.items()})
        try:
            out = compiled.run(feeds)
        except ToolchainError as e:
            raise InputError(f"{self.info.runtime} failed to run {self.what}: {e}") from None
        missing = [n for n in names if n not in out]
        if missing:
            raise InputError(f"{self.info.runtime} gave no output '{missing[0]}' for {self.what}")
        return {n: out[n] for n in names}


def _toolchain_factory(name: str):
    def create(source: _Source, what: str, provider: str, require_cuda: bool, optimize: bool,
               threads: Optional[int]):
        import importlib

        if provider == "cuda" or require_cuda:
            raise RuntimeUnavailableError(f"{name} runs on the CPU here; use provider cpu")
        try:
            module = importlib.import_module(f"deconv2sub.toolchains.{name}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("deconv2sub"):
                raise RuntimeUnavailableError(f"no {name} runner in this deconv2sub") from None
            raise RuntimeUnavailableError(f"{name} is not installed ({e.name} missing)") from None
        reason = module.unavailable_reason()
        if reason:
            raise RuntimeUnavailableError(reason)
        version = getattr(module, "version", lambda: "")()
        return ToolchainRunner(module, source, RuntimeInfo(name, "CPU", ["CPU"], None, version), what)

    return create


_FACTORIES = {"onnxruntime": _create_ort, "openvino": _create_openvino,
              **{name: _toolchain_factory(name) for name in TOOLCHAINS}}


def _specs(source: _Source, runtime: str, what: str) -> List[TensorSpec]:
    try:
        return model_input_specs(source.metadata())
    except InputError:
        raise
    except Exception as e:  # the runtime accepted the model but onnx cannot parse it: unlikely
        raise InputError(f"{runtime} loaded {what}, but onnx cannot read its inputs: {_one_line(e)}") from None


def create_runner(
    model: ModelArg,
    *,
    runtime: str = "onnxruntime",
    provider: str = "auto",
    require_cuda: bool = False,
    optimize: bool = False,
    threads: Optional[int] = None,
    what: str = "model",
) -> Runner:
    """Load ``model`` (ModelProto, serialised bytes, or path) on ``runtime``.

    ``provider``: ``"auto"`` uses CUDA when it truly works, else CPU with a note; ``"cuda"``
    the same, but ``require_cuda`` turns the fallback into RuntimeUnavailableError; ``"cpu"``.
    ``optimize`` enables graph optimisations (off by default so that the graph we compare is
    the graph we wrote). ``what`` names the model in error messages ("original model").
    """
    if runtime not in _FACTORIES:
        raise InputError(f"unknown runtime '{runtime}' (choose from: {', '.join(RUNTIMES)})")
    if provider not in PROVIDERS:
        raise InputError(f"unknown provider '{provider}' (choose from: {', '.join(PROVIDERS)})")
    if require_cuda and provider == "cpu":
        raise InputError("requiring CUDA contradicts provider 'cpu'")
    if threads is not None and threads < 0:
        raise InputError(f"thread count must be 0 (runtime default) or more, not {threads}")
    return _FACTORIES[runtime](_source(model), what, provider, require_cuda, optimize, threads)
