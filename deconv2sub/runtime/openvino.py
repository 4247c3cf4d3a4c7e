"""OpenVINO on CPU: :class:`OpenVinoRunner`, inference precision pinned to f32."""

from __future__ import annotations

import re

import numpy as np

from ..errors import InputError, NoKernelError, RuntimeUnavailableError
from .base import ModelSource, Runner, RunnerOptions, RuntimeInfo, source_specs

__all__ = ["OpenVinoRunner", "create_openvino"]

_OV_NOISE = re.compile(
    r"^(Exception from |Check '.*' failed at |FrontEnd API failed with |Summary:|To facilitate )")


def _ov_error(e: BaseException) -> str:
    """The informative line of an OpenVINO message (a stack of "Exception from file:line" lines)."""
    lines = [ln.strip() for ln in str(e).splitlines()
             if ln.strip() and not _OV_NOISE.match(ln.strip())]
    return re.sub(r"^-- ", "", lines[-1]) if lines else type(e).__name__


class OpenVinoRunner(Runner):
    """A model compiled by OpenVINO (``compiled``), run through one infer request."""

    def __init__(self, compiled, source: ModelSource, info: RuntimeInfo, what: str):
        """Wrap ``compiled``; its output ports are named as the ONNX graph's outputs."""
        graph_outputs = [o.name for o in source.metadata().graph.output]
        self._ports = []
        for port in compiled.outputs:
            names = port.get_names()
            name = next((n for n in graph_outputs if n in names), port.get_any_name())
            self._ports.append((name, port))
        super().__init__(info, source_specs(source, info.runtime, what),
                         [n for n, _ in self._ports], what, source.keepalive)
        self.compiled = compiled
        self._request = compiled.create_infer_request()

    def run(self, feeds, output_names=None):
        """Run once; results are copies (the request's buffers are reused by the next run)."""
        names = self._wanted(output_names)
        try:
            results = self._request.infer(dict(feeds))
        except Exception as e:
            raise InputError(f"openvino failed to run {self.what}: {_ov_error(e)}") from None
        by_name = {name: np.array(results[port], copy=True) for name, port in self._ports}
        return {n: by_name[n] for n in names}

    def run_for_timing(self, feeds):
        """Run once sharing the inputs' and outputs' memory: nothing copied, nothing returned."""
        try:
            self._request.infer(feeds, share_inputs=True, share_outputs=True)
        except Exception as e:
            raise InputError(f"openvino failed to run {self.what}: {_ov_error(e)}") from None


def create_openvino(source: ModelSource, what: str, options: RunnerOptions) -> OpenVinoRunner:
    """OpenVINO on CPU.

    ``options.optimize`` is ignored: OpenVINO always optimises. Inference precision is pinned to
    f32, because its CPU plugin may otherwise compute in bf16/f16 on capable CPUs and the
    comparison would measure that, not the rewrite.
    """
    if options.provider == "cuda" or options.require_cuda:
        raise RuntimeUnavailableError(
            "OpenVINO has no CUDA device here; use onnxruntime for CUDA, or provider cpu")
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeUnavailableError(
            "OpenVINO is not installed: pip install 'deconv2sub[openvino]'") from None
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if options.threads:
        config["INFERENCE_NUM_THREADS"] = options.threads
    core = ov.Core()
    try:
        if source.data is None:
            model = core.read_model(source.path)
        else:
            model = core.read_model(model=source.data, weights=b"")
        compiled = core.compile_model(model, "CPU", config)
    except Exception as e:
        # An op OpenVINO cannot convert is "cannot run here", like a missing ORT kernel.
        error = NoKernelError if "No conversion rule found" in str(e) else InputError
        raise error(f"openvino cannot load {what}: {_ov_error(e)}") from None
    info = RuntimeInfo("openvino", "CPU", ["CPU"], None, ov.__version__.split("-")[0])
    return OpenVinoRunner(compiled, source, info, what)
