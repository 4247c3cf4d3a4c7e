"""Deployment toolchains: the toolchain's *own* converter and runtime, as a user deploys.

Each converts an ONNX model with the toolchain's own converter, then runs the result with the
toolchain's own runtime, so that a user learns whether the graph survives the trip to the target
(not just ONNX Runtime).

One module per toolchain (``ncnn``, ``mnn``, ``tflite``, ``tvm``, ``iree``, ...), each exposing:

* ``NAME``: the toolchain's name as used on the command line (``--runtime ncnn``).
* ``unavailable_reason() -> Optional[str]``: ``None`` when the toolchain is installed and usable,
  else one line saying what is missing and how to install it.
* ``compile(model_path, input_shapes, workdir) -> Compiled``: run the toolchain's converter on the
  ONNX file at ``model_path`` for the static ``input_shapes`` (ONNX input name -> shape) and load
  the result; raises :class:`ToolchainError` with a one-line reason when the converter or loader
  fails.

:class:`Compiled` runs the converted model on feeds keyed by ONNX input names and returns outputs
keyed by ONNX output names, as float32/NCHW arrays laid out like ONNX Runtime's; its
:meth:`~Compiled.timed_run` times one run in the process that runs the model. A module may
declare ``TOLERANCES = (rtol, atol)`` when its runtime computes in a lower precision
(:func:`tolerances`), and a compiled model may carry ``notes`` (one line each, e.g. layers RKNN
placed on the CPU).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Dict, List, Mapping, Tuple

import numpy as np

from ..errors import Deconv2SubError


def tolerances(name: str, default: Tuple[float, float]) -> Tuple[float, float]:
    """(rtol, atol) to hold toolchain ``name``'s outputs to.

    Its module's ``TOLERANCES`` where it declares them (RKNN computes in float16), else ``default``.
    """
    import importlib

    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ImportError:
        return default
    return tuple(getattr(module, "TOLERANCES", default))


class ToolchainError(Deconv2SubError):
    """The toolchain's converter or runtime failed on a model (a one-line reason)."""


class Compiled(ABC):
    """A model converted by a toolchain and loaded in its runtime."""

    #: ONNX input names, in the model's order
    input_names: List[str]
    #: ONNX output names, in the model's order
    output_names: List[str]
    #: what the converter produced, e.g. the ncnn .param/.bin paths (for reports)
    artifacts: List[str]

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run once on ``feeds`` (ONNX input name -> array); outputs keyed by ONNX output name."""

    def timed_run(self, feeds: Mapping[str, np.ndarray]) -> float:
        """Seconds of one run on ``feeds``, measured in the process that runs the model.

        Here: ``perf_counter`` around :meth:`run`. A model run in another process (a worker) times
        the run there, so that the arrays' trip to it is not counted.
        """
        t = time.perf_counter()
        self.run(feeds)
        return time.perf_counter() - t
