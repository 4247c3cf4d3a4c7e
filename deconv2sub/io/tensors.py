"""A model's tensors and their external-data markers: walking, reading and setting them.

Nothing here touches a file: these helpers say which tensors a model holds (graph, subgraphs,
attributes, functions), whether and where one is marked as stored outside the model, and how many
bytes its data takes; :func:`point_to` and :func:`make_inline` set or clear the marker.
"""

from __future__ import annotations

import os
from typing import Iterator, Optional, Union

import onnx
from onnx import external_data_helper

PathLike = Union[str, "os.PathLike[str]"]

#: External-data location of tensors whose data is held apart from the model (``detached=`` of
#: :func:`deconv2sub.io.save.stage_model`; see ``api.convert_for_save``). Never written to a file.
DETACHED_LOCATION = "<deconv2sub:detached>"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type name)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _iter_graph_tensors(graph) -> Iterator[onnx.TensorProto]:
    """Initializers and attribute tensors of a graph or function, subgraphs included."""
    yield from getattr(graph, "initializer", ())
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _iter_graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _iter_graph_tensors(sub)


def iter_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model that can hold external data (graph, subgraphs, functions)."""
    yield from _iter_graph_tensors(model.graph)
    for function in model.functions:
        yield from _iter_graph_tensors(function)


def uses_external_data(tensor: onnx.TensorProto) -> bool:
    """Whether ``tensor`` is marked as stored outside the model (its data may be loaded or not)."""
    return external_data_helper.uses_external_data(tensor)


def is_unloaded(tensor: onnx.TensorProto) -> bool:
    """Whether ``tensor`` is marked external and its data is not in memory."""
    return uses_external_data(tensor) and not tensor.HasField("raw_data")


def external_location(tensor: onnx.TensorProto) -> str:
    """The ``location`` entry of ``tensor``'s external-data marker ("" when there is none)."""
    for entry in tensor.external_data:
        if entry.key == "location":
            return entry.value
    return ""


def is_detached(tensor: onnx.TensorProto) -> bool:
    """Whether ``tensor``'s data is held apart from the model (:data:`DETACHED_LOCATION`)."""
    return is_unloaded(tensor) and external_location(tensor) == DETACHED_LOCATION


def tensor_nbytes(tensor: onnx.TensorProto) -> Optional[int]:
    """Bytes of a tensor's data computed from dims and type (None for strings / unknown types)."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:  # noqa: BLE001
        return None
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    count = 1
    for d in tensor.dims:
        count *= int(d)
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (count + 1) // 2
    return count * itemsize


def point_to(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Mark ``tensor`` as stored at ``location`` (relative), bytes [offset, offset + length)."""
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


def make_inline(tensor: onnx.TensorProto) -> None:
    """Clear ``tensor``'s external-data marker (its data, if any, is then read from the model)."""
    tensor.data_location = onnx.TensorProto.DEFAULT
    del tensor.external_data[:]
