"""Writing a model's tensors for saving: into one external data file, or inline.

:func:`prepare` decides, tensor by tensor, where the data goes: big tensors (and tensors already
marked external) into the data file, aligned so that runtimes can memory-map them, small ones
inline; data not in memory is streamed from the input's data files or taken from the detached
arrays, and dropped once written.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import onnx
from onnx import external_data_helper

from .external_data import copy_range, read_range
from .tensors import (
    PathLike,
    is_detached,
    iter_tensors,
    make_inline,
    point_to,
    tensor_nbytes,
    uses_external_data,
)

#: Tensors whose raw data has at least this many bytes go to the external data file.
EXTERNAL_TENSOR_MIN_BYTES = 1024
#: Tensors of at least this many bytes start at a multiple of ALIGNMENT in the external data file,
#: so that runtimes can memory-map them (ONNX Runtime maps aligned external initializers).
ALIGN_MIN_BYTES = 1 << 20
ALIGNMENT = 1 << 16


def prepare(model: onnx.ModelProto, use_external: bool, location: str, data_path: Optional[str],
            source_dir: Optional[PathLike], consume: bool,
            detached: Optional[dict] = None) -> onnx.ModelProto:
    """The proto to hand to ``onnx.save_model``, its external data written to ``data_path``.

    ``model`` itself when nothing must change; else ``model`` (``consume``) or a copy with tensors
    re-pointed: big tensors (and tensors already external) to ``location`` when ``use_external``,
    everything inline otherwise. Not-loaded tensors are read from ``source_dir``; detached ones
    are taken (and dropped) from ``detached``.
    """
    detached = {} if detached is None else detached
    marked = any(uses_external_data(t) for t in iter_tensors(model))
    if not use_external and not marked:
        return model
    work = model
    if not consume:
        work = onnx.ModelProto()
        work.CopyFrom(model)
    out = open(data_path, "wb") if use_external else None
    try:
        for tensor in iter_tensors(work):
            _place(tensor, out, location, source_dir, detached)
    finally:
        if out is not None:
            out.close()
    return work


def _place(tensor: onnx.TensorProto, out, location: str, source_dir: Optional[PathLike],
           detached: dict) -> None:
    """Write one tensor's data into ``out`` (the data file; None: inline) and re-point it."""
    external = uses_external_data(tensor)
    if is_detached(tensor):
        source = detached.pop(tensor.name)
        data = _detached_bytes(source)
        if out is not None:
            start = _align(out, data.nbytes)
            out.write(data)
            point_to(tensor, location, start, data.nbytes)
        else:
            tensor.raw_data = data.tobytes()
            make_inline(tensor)
        return
    if external and not tensor.HasField("raw_data"):
        info = external_data_helper.ExternalDataInfo(tensor)
        src = os.path.join(os.fspath(source_dir), info.location)
        offset = int(info.offset or 0)
        length = int(info.length) if info.length else None
        if out is not None:
            start = _align(out, length)
            n = copy_range(src, offset, length, out)
            point_to(tensor, location, start, n)
        else:
            tensor.raw_data = read_range(src, offset, length)
            make_inline(tensor)
        return
    if not tensor.HasField("raw_data") or out is None:
        if external:
            make_inline(tensor)
        return
    nbytes = tensor_nbytes(tensor)
    if not external and nbytes is not None and nbytes < EXTERNAL_TENSOR_MIN_BYTES:
        return
    data = tensor.raw_data
    if not external and len(data) < EXTERNAL_TENSOR_MIN_BYTES:
        return
    start = _align(out, len(data))
    out.write(data)
    tensor.ClearField("raw_data")
    point_to(tensor, location, start, len(data))


def _detached_bytes(source) -> memoryview:
    """The raw (little-endian) bytes of a detached array or TensorProto; an array is not copied."""
    if isinstance(source, onnx.TensorProto):
        return memoryview(source.raw_data)
    import numpy as np

    array = np.ascontiguousarray(source)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return memoryview(array.reshape(-1).view(np.uint8))


def _align(out, length: Optional[int]) -> int:
    """Pad ``out`` so that a tensor of ``length`` bytes starts aligned; returns the start offset."""
    pos = out.tell()
    if length is None or length >= ALIGN_MIN_BYTES:
        aligned = -(-pos // ALIGNMENT) * ALIGNMENT
        if aligned != pos:
            out.write(b"\0" * (aligned - pos))
            pos = aligned
    return pos
