"""Ncnn (Tencent's mobile inference library): ONNX -> ``pnnx`` -> ``.ncnn.param/.bin`` -> ``Net``.

The ``ncnn.Net`` runs on the CPU, fp32, 2 threads.

Install (PyPI, no compiler): ``pip install pnnx ncnn`` (``.ci/toolchains/ncnn.sh``). The ``pnnx``
package's Python side imports torch, but its converter is a native binary inside the package
(``pnnx/pnnx``), found here without importing the package and run as a child process; set
``DECONV2SUB_PNNX`` to use another binary.

ncnn has no batch dimension: a blob is one batch element (CHW; 1-D signals are (C, L) and 3-D
volumes (C, D, H, W)). pnnx converts for the static shapes given (``inputshape=``), so only batch 1
is accepted, and :meth:`NcnnModel.run` drops the batch axis on the way in and restores it on the
way out. pnnx names the blobs ``in0, in1, ...`` and ``out0, out1, ...`` in the order of the ONNX
graph's inputs and outputs; that order maps them back to ONNX names.

fp32 is forced both ways: ``fp16=0`` keeps the weights fp32 in the .bin, and every fp16/bf16/int8
storage and arithmetic option of the runtime is switched off (ncnn turns fp16 storage on by default
where the CPU has it). OpenMP's spin-wait is off (``openmp_blocktime = 0``): see :func:`fp32_net`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx

from . import Compiled, ToolchainError
from .native import captured_fds, graph_io, key_message, run_converter

NAME = "ncnn"
#: ncnn blobs have no batch axis: the runner feeds a batch one sample at a time
MAX_BATCH = 1

#: threads ncnn runs with (the project measures at 2 threads)
THREADS = 2

#: protobuf's limit on one serialised message
PROTOBUF_LIMIT = 2**31 - 1

#: how to install what is missing
INSTALL_HINT = "pip install pnnx ncnn (or .ci/toolchains/ncnn.sh VENV)"


def pnnx_binary() -> Optional[str]:
    """The pnnx converter binary: ``$DECONV2SUB_PNNX``, else the one in the pnnx package."""
    explicit = os.environ.get("DECONV2SUB_PNNX")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    spec = importlib.util.find_spec("pnnx")  # finds the package without importing it (torch)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in ("pnnx", "pnnx.exe"):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return None


def unavailable_reason() -> Optional[str]:
    """None when pnnx's binary and the ncnn module are there, else what is missing."""
    if importlib.util.find_spec("ncnn") is None:
        return f"the ncnn Python module is not installed ({INSTALL_HINT})"
    if pnnx_binary() is None:
        return f"the pnnx converter binary is not found ({INSTALL_HINT}, or set DECONV2SUB_PNNX)"
    return None


def inputshape_arg(inputs: Sequence[str], input_shapes: Mapping[str, Sequence[int]]) -> str:
    """Pnnx's ``inputshape=[1,3,8,8]f32,...`` for the inputs in graph order; batch 1 only."""
    parts = []
    for name in inputs:
        if name not in input_shapes:
            raise ToolchainError(f"ncnn needs a static shape for input {name!r}")
        shape = [int(d) for d in input_shapes[name]]
        if not shape or shape[0] != 1:
            raise ToolchainError(f"ncnn runs batch 1 only (no batch axis); input {name!r} "
                                 f"has shape {shape}")
        parts.append("[" + ",".join(str(d) for d in shape) + "]f32")
    return "inputshape=" + ",".join(parts)


def param_layers(param_path: str) -> List[Tuple[str, str, List[str], List[str]]]:
    """The layers of an ncnn .param file: (type, name, input blobs, output blobs)."""
    with open(param_path) as f:
        lines = f.read().splitlines()
    layers = []
    for line in lines[2:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        n_in, n_out = int(fields[2]), int(fields[3])
        blobs = fields[4:4 + n_in + n_out]
        layers.append((fields[0], fields[1], blobs[:n_in], blobs[n_in:]))
    return layers


def self_contained_copy(model_path: str, dest: str) -> None:
    """Copies the model to ``dest`` with its external data (if any) pulled in.

    So pnnx finds every weight; a model past protobuf's 2 GB limit keeps one data file beside
    ``dest``.
    """
    try:
        model = onnx.load(model_path)  # reads external data relative to the model's folder
    except Exception as exc:  # protobuf's DecodeError, a missing data file, ...
        raise ToolchainError(f"cannot read ONNX model {model_path}: {exc}") from exc
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save(model, dest)
    else:
        onnx.save(model, dest, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=os.path.basename(dest) + ".data")


def convert(model_path: str, input_shapes: Mapping[str, Sequence[int]],
            workdir: str) -> Tuple[str, str]:
    """Run pnnx on a copy of the model in ``workdir``; return the .ncnn.param and .ncnn.bin paths.

    pnnx writes its side files next to its input, so it gets a copy: the user's folder is left
    alone. The copy is self-contained (pnnx does not find external data beside the original).
    """
    binary = pnnx_binary()
    if binary is None:
        raise ToolchainError(unavailable_reason() or "pnnx not found")
    inputs, _, _ = graph_io(model_path)
    shape_arg = inputshape_arg(inputs, input_shapes)
    os.makedirs(workdir, exist_ok=True)
    local = os.path.join(workdir, "model.onnx")
    self_contained_copy(model_path, local)
    out = {key: os.path.join(workdir, "model" + suffix) for key, suffix in [
        ("ncnnparam", ".ncnn.param"), ("ncnnbin", ".ncnn.bin"), ("ncnnpy", "_ncnn.py"),
        ("pnnxparam", ".pnnx.param"), ("pnnxbin", ".pnnx.bin"), ("pnnxpy", "_pnnx.py"),
        ("pnnxonnx", ".pnnx.onnx")]}
    for stale in out.values():  # a reused workdir must not pass off an old model as new
        if os.path.exists(stale):
            os.remove(stale)
    argv = [binary, local, shape_arg, "fp16=0"] + [f"{k}={v}" for k, v in out.items()]
    text = run_converter(argv, "pnnx", cwd=workdir)
    with open(os.path.join(workdir, "pnnx.log"), "w") as f:
        f.write(text)
    if not (os.path.isfile(out["ncnnparam"]) and os.path.isfile(out["ncnnbin"])):
        raise ToolchainError("pnnx wrote no ncnn model: " + key_message(text, "no message"))
    return out["ncnnparam"], out["ncnnbin"]


def fp32_net(threads: int = THREADS):
    """An ``ncnn.Net`` set to compute in fp32 on the CPU with ``threads`` threads."""
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    opt.num_threads = threads
    # OpenMP threads otherwise spin 20 ms after each layer; on a shared CPU that turned 0.04 ms
    # runs into 100 ms ones (measured), and it makes interleaved timings meaningless
    opt.openmp_blocktime = 0
    for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic",
                 "use_bf16_storage", "use_bf16_packed", "use_int8_inference",
                 "use_int8_storage", "use_int8_packed", "use_int8_arithmetic"):
        if hasattr(opt, flag):
            setattr(opt, flag, False)
    return net


class NcnnModel(Compiled):
    """A model converted by pnnx and loaded in ``ncnn.Net`` (batch 1, fp32)."""

    def __init__(self, net, param_path: str, bin_path: str, inputs: List[str], outputs: List[str],
                 ranks: Dict[str, int]):
        """Wraps a loaded ``ncnn.Net`` and the ONNX rank of each output."""
        self.net = net
        self.input_names = inputs
        self.output_names = outputs
        self.artifacts = [param_path, bin_path]
        self.output_ranks = ranks
        #: the ncnn layer types, in file order (Input layers included)
        self.ops = [layer[0] for layer in param_layers(param_path)]

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One forward pass; feeds and outputs carry the batch axis (size 1) like ONNX's."""
        import ncnn

        with self.net.create_extractor() as ex:
            for i, name in enumerate(self.input_names):
                arr = np.asarray(feeds[name], dtype=np.float32)
                if arr.ndim < 2 or arr.shape[0] != 1:
                    raise ToolchainError(f"ncnn runs batch 1 only; {name!r} has shape {arr.shape}")
                ex.input(f"in{i}", ncnn.Mat(np.ascontiguousarray(arr[0])))
            results = {}
            for i, name in enumerate(self.output_names):
                ret, mat = ex.extract(f"out{i}")
                if ret != 0:
                    raise ToolchainError(f"ncnn failed to compute output {name!r} (status {ret})")
                results[name] = self.with_batch_axis(name, np.array(mat, dtype=np.float32))
        return results

    def with_batch_axis(self, name: str, blob: np.ndarray) -> np.ndarray:
        """The ONNX-rank array for an ncnn blob.

        The batch axis (and any unit axes ncnn dropped) is put back in front; leading unit axes
        past the ONNX rank are removed (pnnx keeps the batch axis of some reshaped tensors, e.g.
        after a rank-5 Reshape/Transpose).
        """
        rank = self.output_ranks.get(name, blob.ndim + 1)
        out = np.array(blob, dtype=np.float32, copy=True)
        while out.ndim < rank:
            out = out[None]
        while out.ndim > rank and out.shape[0] == 1:
            out = out[0]
        return out


def load(param_path: str, bin_path: str, inputs: List[str], outputs: List[str],
         ranks: Dict[str, int]) -> NcnnModel:
    """Load a converted model; ncnn's own message when it refuses a layer."""
    net = fp32_net()
    with captured_fds() as log:
        status = net.load_param(param_path)
        if status == 0:
            status = net.load_model(bin_path)
    if status != 0:
        raise ToolchainError("ncnn could not load the converted model: "
                             + key_message(log.text, f"status {status}"))
    blobs = {b for layer in param_layers(param_path) for b in layer[2] + layer[3]}
    missing = [f"in{i}" for i in range(len(inputs)) if f"in{i}" not in blobs]
    missing += [f"out{i}" for i in range(len(outputs)) if f"out{i}" not in blobs]
    if missing:
        raise ToolchainError(f"pnnx's model lacks the blobs {missing} for the ONNX inputs/outputs")
    return NcnnModel(net, param_path, bin_path, inputs, outputs, ranks)


def compile(model_path: str, input_shapes: Mapping[str, Sequence[int]], workdir: str) -> NcnnModel:
    """Convert ``model_path`` with pnnx for ``input_shapes`` (batch 1) and load it in ncnn."""
    reason = unavailable_reason()
    if reason:
        raise ToolchainError(reason)
    param_path, bin_path = convert(model_path, input_shapes, workdir)
    inputs, outputs, ranks = graph_io(model_path)
    return load(param_path, bin_path, inputs, outputs, ranks)
