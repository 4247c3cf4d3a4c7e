"""Data-less copies of big models, for the checker and shape inference.

Both only need dims and small constants; a skeleton leaves the data of the big tensors out (they
point at a stub data file instead), so a model over protobuf's 2 GiB limit can be checked and its
weights are never copied.
"""

from __future__ import annotations

from typing import Tuple

import onnx
from onnx import external_data_helper

from .tensors import iter_tensors, point_to, tensor_nbytes, uses_external_data

#: Tensors of at least this many bytes are left out of a skeleton by default.
SKELETON_MIN_BYTES = 1024
#: The location the left-out tensors point at.
STUB_LOCATION = "stub.data"


def skeleton(model: onnx.ModelProto, min_bytes: int = SKELETON_MIN_BYTES,
             location: str = STUB_LOCATION) -> Tuple[onnx.ModelProto, int]:
    """A copy of ``model`` without the data of its big main-graph initializers.

    Initializers of ``min_bytes`` or more carry no data: they are marked external (``location``,
    consecutive offsets) instead. Returns (skeleton, total stub bytes). Built field by field, so the
    big tensors are never copied (``CopyFrom`` would double the memory of a big model).
    """
    out = onnx.ModelProto()
    for desc, value in model.ListFields():
        if desc.name == "graph":
            continue
        _copy_field(out, desc.name, value)
    graph = out.graph
    for desc, value in model.graph.ListFields():
        if desc.name == "initializer":
            continue
        _copy_field(graph, desc.name, value)
    offset = 0
    for init in model.graph.initializer:
        item_bytes = tensor_nbytes(init)
        if item_bytes is not None and item_bytes >= min_bytes and not uses_external_data(init):
            stub = graph.initializer.add()
            stub.name, stub.data_type = init.name, init.data_type
            stub.dims.extend(init.dims)
            if init.doc_string:
                stub.doc_string = init.doc_string
            point_to(stub, location, offset, item_bytes)
            offset += item_bytes
        else:
            graph.initializer.add().CopyFrom(init)
    return out, offset


def stub_all(model: onnx.ModelProto, min_bytes: int = SKELETON_MIN_BYTES,
             location: str = STUB_LOCATION) -> int:
    """Point every in-memory tensor of ``min_bytes`` or more at ``location``, in place.

    Subgraphs and attributes included; their data is dropped. Returns the total stub bytes.
    """
    offset = 0
    for tensor in iter_tensors(model):
        if tensor.HasField("raw_data"):
            length = len(tensor.raw_data)
            if length >= min_bytes:
                external_data_helper.set_external_data(tensor, location, offset, length)
                tensor.ClearField("raw_data")
                offset += length
    return offset


def _copy_field(dst, name: str, value) -> None:
    if isinstance(value, (str, bytes, int, float, bool)):
        setattr(dst, name, value)
    elif hasattr(value, "CopyFrom"):
        getattr(dst, name).CopyFrom(value)
    else:  # repeated field
        getattr(dst, name).extend(value)
