"""The runtimes a model can run on, and :func:`create_runner`, which loads a model on one of them.

Verification, ``bench`` and the measured chooser run a model the same way on ONNX Runtime (CPU or
CUDA, :mod:`.ort`), OpenVINO (:mod:`.openvino`) and the deployment toolchains (:mod:`.toolchain`);
a further runtime plugs in as one more factory in ``_FACTORIES``.
"""

from __future__ import annotations

from typing import Optional

from ..errors import InputError
from .base import ModelArg, Runner, RunnerOptions, model_source
from .openvino import create_openvino
from .ort import create_ort
from .toolchain import toolchain_factory

__all__ = ["PROVIDERS", "RUNTIMES", "TOOLCHAINS", "create_runner"]

#: deployment toolchains (modules of :mod:`deconv2sub.toolchains`): the model goes through the
#: toolchain's own converter and runs in its runtime
TOOLCHAINS = ("ncnn", "mnn", "tflite", "tvm", "iree", "rknn")
RUNTIMES = ("onnxruntime", "openvino") + TOOLCHAINS
PROVIDERS = ("auto", "cuda", "cpu")

_FACTORIES = {"onnxruntime": create_ort, "openvino": create_openvino,
              **{name: toolchain_factory(name) for name in TOOLCHAINS}}


def create_runner(
    model: ModelArg,
    *,
    runtime: str = "onnxruntime",
    provider: str = "auto",
    require_cuda: bool = False,
    optimize: bool = False,
    threads: Optional[int] = None,
    what: str = "model",
    spin: bool = True,
) -> Runner:
    """Load ``model`` (ModelProto, serialised bytes, or path) on ``runtime``.

    ``provider``: ``"auto"`` uses CUDA when it truly works, else CPU with a note; ``"cuda"``
    the same, but ``require_cuda`` turns the fallback into RuntimeUnavailableError; ``"cpu"``.
    ``optimize`` enables graph optimisations (off by default so that the graph we compare is
    the graph we wrote). ``what`` names the model in error messages ("original model").
    ``spin``: see :class:`~.base.RunnerOptions`.
    """
    if runtime not in _FACTORIES:
        raise InputError(f"unknown runtime '{runtime}' (choose from: {', '.join(RUNTIMES)})")
    if provider not in PROVIDERS:
        raise InputError(f"unknown provider '{provider}' (choose from: {', '.join(PROVIDERS)})")
    if require_cuda and provider == "cpu":
        raise InputError("requiring CUDA contradicts provider 'cpu'")
    if threads is not None and threads < 0:
        raise InputError(f"thread count must be 0 (runtime default) or more, not {threads}")
    options = RunnerOptions(provider, require_cuda, optimize, threads, spin)
    return _FACTORIES[runtime](model_source(model), what, options)
