"""Values of tensors known before run time: initializers, Constant node outputs and folded tensors.

:func:`source_values` reads a ConvTranspose's weight or bias (folding it when it is computed from
constants, see :mod:`deconv2sub.rewrite.fold`) or raises :class:`NoSource` with the reason. Shared
by the graph pass (:mod:`deconv2sub.rewrite.graph_pass`), the consumer sinking
(:mod:`deconv2sub.rewrite.sinking`) and the QDQ handling (:mod:`deconv2sub.rewrite.qdq`). External
data that was not loaded is read lazily from the folder set with :func:`external_data_dir`, and
values are never cached on the graph's constants.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import List, Optional, Tuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import external_data_helper, numpy_helper

from . import fold
from .domains import is_default_op

# Folder against which the external-data locations of tensors not loaded into memory are resolved
# (set by the model-level API for models loaded without their external data).
_EXTERNAL_DATA_DIR: "contextvars.ContextVar[Optional[str]]" = contextvars.ContextVar(
    "deconv2sub_external_data_dir", default=None
)


@contextlib.contextmanager
def external_data_dir(path: Optional[str]):
    """Within the block, weights kept in external data files are read lazily from ``path``."""
    token = _EXTERNAL_DATA_DIR.set(None if path is None else os.fspath(path))
    try:
        yield
    finally:
        _EXTERNAL_DATA_DIR.reset(token)


class NoSource(Exception):
    """A weight/bias whose values are not known before run time; ``str()`` is the reason."""


def _proto_values(proto: onnx.TensorProto) -> np.ndarray:
    """Values of a TensorProto, reading external data lazily; the proto itself is never modified."""
    if external_data_helper.uses_external_data(proto) and not proto.HasField("raw_data"):
        base = _EXTERNAL_DATA_DIR.get()
        if base is None:
            raise NoSource(f"'{proto.name}' is stored in an external data file that was not loaded")
        try:
            return numpy_helper.to_array(proto, base)
        except Exception as exc:  # noqa: BLE001
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise NoSource(
                f"'{proto.name}': cannot read its external data: {first.strip()}"
            ) from None
    return numpy_helper.to_array(proto)


def _gsconstant_values(const: gs.Constant) -> np.ndarray:
    """Values of a gs.Constant, not cached on it.

    Values of a gs.Constant without caching them on the Constant (big weights are read once, used
    for the plan and dropped; a Constant that is exported again keeps its original TensorProto).
    """
    from onnx_graphsurgeon.ir.tensor import LazyValues, SparseValues

    values = const._values
    if isinstance(values, SparseValues):
        return np.asarray(values.load())
    if isinstance(values, LazyValues):
        return _proto_values(values.tensor)
    return np.asarray(values)


def constant_values(tensor) -> Optional[np.ndarray]:
    """Values of a tensor known before run time: an initializer or the output of a Constant node."""
    if isinstance(tensor, gs.Constant):
        return _gsconstant_values(tensor)
    if isinstance(tensor, gs.Variable) and len(tensor.inputs) == 1:
        producer = tensor.inputs[0]
        if is_default_op(producer, "Constant"):
            value = producer.attrs.get("value")
            if isinstance(value, gs.Constant):
                return _gsconstant_values(value)
            for key, dtype in (
                ("value_float", np.float32),
                ("value_floats", np.float32),
                ("value_int", np.int64),
                ("value_ints", np.int64),
            ):
                if key in producer.attrs and not isinstance(
                    producer.attrs[key], gs.Node.AttributeRef
                ):
                    return np.asarray(producer.attrs[key], dtype=dtype)
    return None


def known_values(tensor) -> Optional[np.ndarray]:
    """The values of a constant, or None where they cannot be read.

    :func:`constant_values`, or None where the values cannot be read (external data not loaded or
    unreadable): for optional optimisations, which then leave the node alone.
    """
    try:
        return constant_values(tensor)
    except NoSource:
        return None


def describe_source(tensor, graph: Optional[gs.Graph] = None) -> str:
    """Why ``tensor`` is not known before run time (one clause of a skip reason)."""
    if isinstance(tensor, gs.Variable) and not tensor.inputs:
        if isinstance(graph, gs.Function) and any(t is tensor for t in graph.inputs):
            return f"'{tensor.name}' is an input of function '{graph.name}' (known only per call)"
        return f"'{tensor.name}' is a graph input (known only at run time)"
    if isinstance(tensor, gs.Variable) and tensor.inputs:
        producer = tensor.inputs[0]
        return f"'{tensor.name}' is computed at run time by {producer.op} node '{producer.name}'"
    return f"'{tensor.name}' is not a constant"


def source_values(
    tensor, graph, opset: int, cache: Optional[dict]
) -> Tuple[np.ndarray, List[gs.Node], Optional[str]]:
    """(values, producer nodes, fold note) of a weight/bias known before run time.

    Raises NoSource when it is not.

    An initializer or Constant node is read directly; a tensor computed from constants only is
    folded (see :mod:`deconv2sub.rewrite.fold`), once per tensor per pass when ``cache`` is given.
    """
    values = constant_values(tensor)
    if values is not None:
        producers = list(tensor.inputs) if isinstance(tensor, gs.Variable) else []
        return values, producers, None
    if isinstance(tensor, gs.Variable) and not tensor.inputs:
        raise NoSource(describe_source(tensor, graph))
    key = id(tensor)
    if cache is not None and key in cache:
        _, result = cache[key]
    else:
        try:
            result = fold.fold_tensor(tensor, constant_values, opset)
        except fold.FoldError as err:
            result = err
        except NoSource as err:
            result = fold.FoldError(str(err))
        if cache is not None:
            cache[key] = (tensor, result)  # the tensor is kept alive so that its id stays unique
    if isinstance(result, fold.FoldError):
        producer = tensor.inputs[0]
        raise NoSource(
            f"'{tensor.name}' is computed at run time by {producer.op} node '{producer.name}' "
            f"and cannot be folded: it {result}"
        )
    return result.values, list(result.nodes), result.note()
