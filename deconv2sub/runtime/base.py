"""What every runner shares: where a model runs, how it is loaded, the model as runtimes take it.

* :class:`RuntimeInfo`: where a model actually runs (not where it was asked to run).
* :class:`RunnerOptions`: how :func:`deconv2sub.runtime.runners.create_runner` was asked to load it.
* :class:`Runner`: one loaded model on one runtime and device; feeds and results keyed by ONNX name.
* :class:`ModelSource`: the model as serialised bytes, or as a file when it is 2 GiB or more.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import onnx

from ..errors import InputError
from ..verify.inputs import TensorSpec, model_input_specs

__all__ = ["ModelArg", "ModelSource", "Runner", "RunnerOptions", "RuntimeInfo", "model_source",
           "one_line", "source_specs"]

# Protobuf cannot serialise a message of 2 GiB or more; such models must reach the runtime as a
# file with external data. (A module constant so that tests can exercise that path cheaply.)
_MAX_PROTO_BYTES = 2**31 - 1

ModelArg = Union[onnx.ModelProto, bytes, str, "os.PathLike[str]"]


@dataclass
class RuntimeInfo:
    """Where a model actually runs (not where it was asked to run)."""

    runtime: str  # "onnxruntime" | "openvino" | a toolchain
    device: str  # "CUDA" | "CPU"
    providers: List[str] = field(default_factory=list)  # ORT providers in priority order / devices
    note: Optional[str] = None  # e.g. "CUDAExecutionProvider unavailable: fell back to CPU"
    version: str = ""
    detail: Optional[str] = None  # why a requested device was unavailable (for --verbose output)

    def describe(self, verbose: bool = False) -> str:
        """E.g. ``onnxruntime 1.31.1 on CPU (CUDAExecutionProvider unavailable: fell back to CPU)``.

        ``verbose``: with :attr:`detail` appended.
        """
        text = f"{self.runtime} {self.version}".rstrip() + f" on {self.device}"
        if self.note:
            text += f" ({self.note})"
        if verbose and self.detail:
            text += f": {self.detail}"
        return text


@dataclass(frozen=True)
class RunnerOptions:
    """How a model is to be loaded (see :func:`deconv2sub.runtime.runners.create_runner`).

    ``spin``: whether ONNX Runtime's idle intra-op workers spin (its default). Timing loops that
    alternate between models turn it off: a spinning pool steals the cores of the next model.
    """

    provider: str = "auto"
    require_cuda: bool = False
    optimize: bool = False
    threads: Optional[int] = None
    spin: bool = True


class Runner(ABC):
    """One loaded model on one runtime and device; feeds and results keyed by ONNX tensor name."""

    def __init__(self, info: RuntimeInfo, specs: List[TensorSpec], outputs: List[str], what: str,
                 keepalive=None):
        """``keepalive``: what must live as long as the runner (the temp dir of a >2 GiB model)."""
        self.info = info
        self.what = what
        self._specs = specs
        self._outputs = outputs
        self._keepalive = keepalive

    def input_specs(self) -> List[TensorSpec]:
        """The model's graph inputs (initializers excluded)."""
        return list(self._specs)

    def output_names(self) -> List[str]:
        """The model's graph outputs, in the runner's order."""
        return list(self._outputs)

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray],
            output_names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """Run once; returns ``{output name: array}`` for ``output_names`` (default: all)."""

    def run_for_timing(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Run once on ``feeds`` as given, results discarded: what a timing loop calls.

        Runtimes whose :meth:`run` copies results out of reused buffers skip that copy here, so
        that the time measured is the runtime's, not this wrapper's.
        """
        self.run(feeds)

    def timed_run(self, feeds: Mapping[str, np.ndarray]) -> float:
        """Seconds of one run on ``feeds``, as measured where the model runs: what timing loops use.

        Here: ``perf_counter`` around :meth:`run_for_timing`. A runner whose model runs in another
        process times the run there, so that the trip to it (files, pipe) is not counted.
        """
        t = time.perf_counter()
        self.run_for_timing(feeds)
        return time.perf_counter() - t

    def _wanted(self, output_names: Optional[Sequence[str]]) -> List[str]:
        names = list(self._outputs if output_names is None else output_names)
        unknown = [n for n in names if n not in self._outputs]
        if unknown:
            raise InputError(f"{self.what} has no output '{unknown[0]}' "
                             f"(outputs: {', '.join(self._outputs)})")
        return names


@dataclass
class ModelSource:
    """The model as a runtime can take it: serialised bytes, or a path (required > 2 GiB)."""

    data: Optional[bytes] = None
    path: Optional[str] = None
    proto: Optional[onnx.ModelProto] = None  # graph metadata only (no external data needed)
    keepalive: Optional[tempfile.TemporaryDirectory] = None

    def metadata(self) -> onnx.ModelProto:
        """The model's graph, read once (without external data)."""
        if self.proto is None:
            if self.data is not None:
                self.proto = onnx.load_from_string(self.data)
            else:
                self.proto = onnx.load(self.path, load_external_data=False)
        return self.proto


def model_source(model: ModelArg) -> ModelSource:
    """``model`` (ModelProto, bytes or path) as a :class:`ModelSource`.

    A proto of 2 GiB or more is written with external data to a temporary folder that lives as long
    as the source.
    """
    if isinstance(model, onnx.ModelProto):
        if model.ByteSize() <= _MAX_PROTO_BYTES:
            return ModelSource(data=model.SerializeToString(), proto=model)
        tmp = tempfile.TemporaryDirectory(prefix="deconv2sub-")
        path = os.path.join(tmp.name, "model.onnx")
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # saving with external data strips the weights from the given proto
        onnx.save_model(copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.data")
        return ModelSource(path=path, proto=model, keepalive=tmp)
    if isinstance(model, (bytes, bytearray, memoryview)):
        return ModelSource(data=bytes(model))
    return ModelSource(path=os.fspath(model))


def one_line(e: BaseException, limit: int = 400) -> str:
    """The message on one line, without ORT's ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :``.

    Lines are joined, not dropped: ORT puts the useful part ("index: 1 Got: 3 Expected: 2") on the
    second line.
    """
    text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip()) or type(e).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def source_specs(source: ModelSource, runtime: str, what: str) -> List[TensorSpec]:
    """The input specs of a model ``runtime`` has loaded; InputError if onnx cannot read them."""
    try:
        return model_input_specs(source.metadata())
    except InputError:
        raise
    except Exception as e:  # the runtime accepted the model but onnx cannot parse it: unlikely
        raise InputError(f"{runtime} loaded {what}, but onnx cannot read its inputs: "
                         f"{one_line(e)}") from None

