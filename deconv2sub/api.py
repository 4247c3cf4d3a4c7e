"""Model-level API: ONNX model (or path) in, rewritten model and per-node report out."""

from __future__ import annotations

import contextlib
import os
from typing import Dict, Optional, Tuple, Union

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .errors import InputError
from .io.tensors import DETACHED_LOCATION as _DETACHED
from .report import ConversionReport
from .rewrite.graph_pass import convert_graph
from .rewrite.operands import external_data_dir as _external_data_dir
from .rewrite.options import ConvertOptions
from .targets.autotune import measurer

#: Above this in-memory size, shape inference runs on a skeleton without the big tensors' data.
_SKELETON_BYTES = 64 << 20

__all__ = ["convert_model", "infer_shapes"]

ModelLike = Union[onnx.ModelProto, str, os.PathLike]


def infer_shapes(model: onnx.ModelProto,
                 input_shapes: Optional[Dict[str, Tuple[int, ...]]] = None) -> Dict[str, list]:
    """Tensor name → shape (int, dim_param string, or None) from ONNX shape inference.

    Subgraphs included.

    Runs on a copy; the caller's model is never modified. Failures of inference are not fatal: the
    pass then only knows what the model itself declares. Big models are inferred on a skeleton that
    leaves out the data of big initializers (inference only needs their dims), so their weights are
    not copied. ``input_shapes`` (``{graph input: shape}``, checked: InputError) replaces the
    inputs' declared shapes.
    """
    from .verify.inputs import check_input_shapes, with_input_shapes

    if input_shapes:
        check_input_shapes(model, input_shapes)
    try:
        source = model
        if model.ByteSize() > _SKELETON_BYTES:
            from .io.skeleton import skeleton

            source, _ = skeleton(model, min_bytes=1 << 16)
        if input_shapes:
            source = with_input_shapes(source, input_shapes)
        inferred = onnx.shape_inference.infer_shapes(
            source, check_type=False, strict_mode=False, data_prop=True
        )
        del source
    except Exception:  # inference is best effort (models > 2GB, custom ops, ...)
        inferred = model
    shapes: Dict[str, list] = {}

    def visit(graph: onnx.GraphProto) -> None:
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                shapes[vi.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in t.shape.dim
                ]
        for init in graph.initializer:
            shapes.setdefault(init.name, list(init.dims))
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        visit(g)

    visit(inferred.graph)
    return shapes


def _copy_model_fields(src: onnx.ModelProto, dst: onnx.ModelProto) -> None:
    """Keep what identifies the model: IR version, opsets, producer, docs, metadata, graph name."""
    dst.ir_version = src.ir_version
    del dst.opset_import[:]
    dst.opset_import.extend(src.opset_import)
    dst.producer_name = src.producer_name
    dst.producer_version = src.producer_version
    dst.domain = src.domain
    dst.model_version = src.model_version
    dst.doc_string = src.doc_string
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)
    dst.graph.name = src.graph.name
    dst.graph.doc_string = src.graph.doc_string


#: Before IR version 4, every initializer must also be declared as a graph input.
_IR_INITIALIZERS_AS_INPUTS = 4


def _fit_ir_version(model: onnx.ModelProto) -> None:
    """Make the exported ``model`` valid for its own (kept) IR version; only IR < 4 needs anything.

    There every initializer must also be a graph input: the rewrite's new initializers are declared
    in the main graph's inputs (the export already dropped the ones no longer used from both lists).
    A subgraph (If/Loop/Scan body) cannot take extra inputs, and Constant nodes cannot hold integer
    tensors before opset 9, so subgraph initializers move up to the main graph, which the subgraph
    sees as its outer scope. (Names are unique model-wide; the export may put one constant into
    each subgraph that uses it: identical copies become one initializer.)
    """
    if model.ir_version >= _IR_INITIALIZERS_AS_INPUTS:
        return
    graph = model.graph
    hoisted = {t.name: t for t in graph.initializer}
    for node in graph.node:
        for sub in _node_subgraphs(node):
            _hoist_initializers(sub, graph, hoisted)
    declared = {vi.name for vi in graph.input}
    for init in graph.initializer:
        if init.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type,
                                                                  list(init.dims)))


def _node_subgraphs(node: onnx.NodeProto):
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _hoist_initializers(sub: onnx.GraphProto, main: onnx.GraphProto,
                        hoisted: Dict[str, onnx.TensorProto]) -> None:
    """Move the initializers of ``sub`` and its nested subgraphs into ``main``.

    ``hoisted``: the initializers of ``main`` by name. A different tensor under a name already there
    is left in place: the checker then refuses the output rather than it meaning something else.
    """
    gone = []
    for i, init in enumerate(sub.initializer):
        same = hoisted.get(init.name)
        if same is None:
            moved = main.initializer.add()
            moved.CopyFrom(init)
            hoisted[init.name] = moved
        elif same.SerializeToString() != init.SerializeToString():
            continue
        gone.append(i)
    for i in reversed(gone):
        del sub.initializer[i]
    for node in sub.node:
        for nested in _node_subgraphs(node):
            _hoist_initializers(nested, main, hoisted)


def _first_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _quiet_graphsurgeon():
    """Keep onnx-graphsurgeon's warnings out of the user's terminal and JSON.

    onnx-graphsurgeon logs warnings (e.g. bfloat16 has no NumPy type) on stdout.
    """
    try:
        from onnx_graphsurgeon.logger import G_LOGGER as logger
    except ImportError:  # pragma: no cover
        yield
        return
    old = logger.severity
    logger.severity = logger.ERROR
    try:
        yield
    finally:
        logger.severity = old


#: Constants of at least this many bytes bypass onnx-graphsurgeon's export (see _export_lean).
_DETACH_MIN_BYTES = 1 << 20


def _export_lean(graph: gs.Graph, attach: bool = True) -> Tuple[onnx.ModelProto, Dict[str, object]]:
    """``gs.export_onnx`` without its copies of big tensors; returns (model, detached data).

    The export builds every initializer as a TensorProto, which ``make_graph`` copies into the graph
    and ``make_model`` copies again: three copies of all weights at once. Big constants are
    therefore exported as data-less stubs. With ``attach`` their data is put into the finished model
    one tensor at a time (an array is dropped as soon as its bytes are in the model); without, the
    stubs keep pointing to ``DETACHED_LOCATION`` and the data (arrays or TensorProtos, by tensor
    name) is returned, for ``io.save.stage_model(..., detached=...)`` to write straight into the
    output's data file.
    """
    from onnx_graphsurgeon.ir.tensor import LazyValues, SparseValues

    from .io.tensors import iter_tensors, point_to, tensor_nbytes, uses_external_data
    from .rewrite.graph_pass import iter_graphs

    found: Dict[str, list] = {}
    for g, _ in iter_graphs(graph):
        for t in g.tensors().values():
            if isinstance(t, gs.Constant):
                found.setdefault(t.name, [])
                if not any(c is t for c in found[t.name]):
                    found[t.name].append(t)
    detached: Dict[str, object] = {}
    for name, consts in found.items():
        if len(consts) != 1 or not name:
            continue  # the same name in several scopes: leave those to the normal export
        const = consts[0]
        values = const._values
        if isinstance(values, SparseValues):
            continue
        if isinstance(values, LazyValues):
            proto = values.tensor
            if uses_external_data(proto) and not proto.HasField("raw_data"):
                continue  # already data-less (external data not loaded)
            nbytes = tensor_nbytes(proto) if proto.HasField("raw_data") else None
            if nbytes is None or nbytes < _DETACH_MIN_BYTES:
                continue
            stub = onnx.TensorProto(name=name, data_type=proto.data_type, dims=list(proto.dims))
            source: object = proto
        else:
            array = np.asarray(values)
            if array.nbytes < _DETACH_MIN_BYTES or array.dtype == object:
                continue
            try:
                elem = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
            except Exception:  # noqa: BLE001
                continue
            stub = onnx.TensorProto(name=name, data_type=elem, dims=list(array.shape))
            nbytes, source = array.nbytes, array
        point_to(stub, _DETACHED, 0, nbytes)
        const._values = LazyValues(stub)
        detached[name] = source
    found.clear()
    out = gs.export_onnx(graph, do_type_check=False)
    if not attach:
        return out, detached
    for tensor in iter_tensors(out):
        if not uses_external_data(tensor) or tensor.HasField("raw_data"):
            continue
        if not any(e.key == "location" and e.value == _DETACHED for e in tensor.external_data):
            continue
        source = detached.pop(tensor.name)
        if isinstance(source, onnx.TensorProto):
            tensor.raw_data = source.raw_data
        else:
            tensor.raw_data = (
                np.ascontiguousarray(source)
                .astype(source.dtype.newbyteorder("<"), copy=False)
                .tobytes()
            )
        del source
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
    return out, {}


def _lazy_external_values(graph: gs.Graph, base_dir: str) -> None:
    """Let constants whose data sits in a not-loaded external file read it from ``base_dir``.

    They read it when (and only when) someone asks for their values. onnx-graphsurgeon's own lazy
    loading would resolve the file against the current directory. Exported untouched, such a
    constant keeps pointing to the file.
    """
    from onnx_graphsurgeon.ir.tensor import LazyValues, SparseValues

    from .io.tensors import uses_external_data
    from .rewrite.graph_pass import iter_graphs

    class ExternalLazyValues(LazyValues):
        def load(self):
            from onnx import numpy_helper

            stub = onnx.TensorProto()
            stub.CopyFrom(self.tensor)  # no data in it: cheap; the caller's proto is never touched
            return numpy_helper.to_array(stub, base_dir)

    for g, _ in iter_graphs(graph):
        for t in g.tensors().values():
            values = getattr(t, "_values", None)
            if (
                isinstance(t, gs.Constant)
                and isinstance(values, LazyValues)
                and not isinstance(values, SparseValues)
                and uses_external_data(values.tensor)
                and not values.tensor.HasField("raw_data")
            ):
                t._values = ExternalLazyValues(values.tensor)
                t.data_location = None  # if its values get loaded and exported, they are in memory


def _has_unloaded_external_data(model: onnx.ModelProto) -> bool:
    from .io.tensors import is_unloaded, iter_tensors

    return any(is_unloaded(t) for t in iter_tensors(model))


def convert_model(
    model: ModelLike,
    options: Optional[ConvertOptions] = None,
    *,
    external_data_dir: Optional[Union[str, os.PathLike]] = None,
    load_external_data: bool = True,
) -> Tuple[onnx.ModelProto, ConversionReport]:
    """Rewrite every ConvTranspose of ``model`` into Conv + periodic shuffle (+ crop).

    ``model`` is an ``onnx.ModelProto`` (left untouched) or a path. Returns the rewritten model and
    the per-node report. When no node is rewritten the returned model is an unchanged copy, so
    converting an already converted model changes nothing.

    External data: from a path, only the ConvTranspose weights are read from the external data
    files; the other tensors are loaded at the end so that the result is self-contained. A
    ModelProto loaded with ``load_external_data=False`` needs ``external_data_dir`` (the model
    file's folder) for that. With ``load_external_data=False`` the untouched tensors keep pointing
    into the input's data files (relative to ``external_data_dir``): what ``deconv2sub convert``
    does to stream them into the output without holding them in memory
    (``io.save.save_model(..., source_dir=external_data_dir)``).
    """
    return _convert(
        model, options, external_data_dir=external_data_dir, load_external_data=load_external_data
    )


def convert_for_save(
    model: onnx.ModelProto,
    options: Optional[ConvertOptions],
    external_data_dir: Optional[Union[str, os.PathLike]],
) -> Tuple[onnx.ModelProto, ConversionReport, Dict[str, object]]:
    """Convert like ``convert_model(..., load_external_data=False)``, keeping big new weights out.

    This is what ``deconv2sub convert`` uses: the big new weights are not copied into the returned
    model either: it points to them (``DETACHED_LOCATION``) and they come back as a third value, to
    go straight into the output's data file with
    ``io.save.stage_model(model, ..., source_dir=external_data_dir, detached=that)``.
    """
    return _convert(
        model, options, external_data_dir=external_data_dir, load_external_data=False, _detach=True
    )


def toolchain_hits(model: onnx.ModelProto, options: ConvertOptions) -> list:
    """The known bugs of ``options.toolchains`` that ``model`` (converted) hits."""
    from .targets import ALL_BUGS, resolve
    from .targets.bugs import find_hits

    bugs = tuple(dict.fromkeys(ALL_BUGS + tuple(resolve(options.target).bugs)))
    return find_hits(model, options.toolchains, bugs)


def _convert(
    model: ModelLike,
    options: Optional[ConvertOptions] = None,
    *,
    external_data_dir: Optional[Union[str, os.PathLike]] = None,
    load_external_data: bool = True,
    _detach: bool = False,
):
    """:func:`convert_model`; with ``_detach``, see :func:`convert_for_save`."""
    if not isinstance(model, onnx.ModelProto):
        from .io.external_data import verify_external_data
        from .io.load import load_model

        path = model
        model = load_model(path, load_external_data=False)
        verify_external_data(model, path)
        if external_data_dir is None:
            external_data_dir = os.path.dirname(os.path.abspath(os.fspath(path)))
    with _quiet_graphsurgeon(), _external_data_dir(external_data_dir):
        try:
            graph = gs.import_onnx(model)
        # a model the checker let through but no one can read
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read the model's graph: {_first_line(exc)}") from None
        if external_data_dir is not None:
            _lazy_external_values(graph, os.fspath(external_data_dir))
        given = options.input_shapes if options is not None else None
        sizes = infer_shapes(model, given) if given else None
        measure = (
            measurer(convert_model) if options is not None and options.strategy == "auto" else None
        )
        report = convert_graph(
            graph, options, shapes=infer_shapes(model), sizes=sizes, measure=measure
        )
        detached: Dict[str, object] = {}
        if report.rewritten:
            try:
                out, detached = _export_lean(graph, attach=not _detach)
            except Exception as exc:  # noqa: BLE001 - e.g. a dim_param that is not valid UTF-8
                raise InputError(f"cannot write the rewritten graph: {_first_line(exc)}") from None
            _copy_model_fields(model, out)
            _fit_ir_version(out)
            if options is not None and options.toolchains:
                report.toolchain_warnings = [h.to_dict() for h in toolchain_hits(out, options)]
        else:
            out = onnx.ModelProto()
            out.CopyFrom(model)
        del graph
    if load_external_data and external_data_dir is not None and _has_unloaded_external_data(out):
        from .io.external_data import load_external_data_into

        load_external_data_into(out, external_data_dir)
    return (out, report, detached) if _detach else (out, report)

