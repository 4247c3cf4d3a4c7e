"""Model-level API: ONNX model (or path) in, rewritten model and per-node report out."""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple, Union

import onnx
import onnx_graphsurgeon as gs

from .report import ConversionReport
from .rewrite import ConvertOptions, convert_graph

__all__ = ["convert_model", "infer_shapes"]

ModelLike = Union[onnx.ModelProto, str, os.PathLike]


def infer_shapes(model: onnx.ModelProto) -> Dict[str, list]:
    """Tensor name → shape (int, dim_param string, or None) from ONNX shape inference, subgraphs included.

    Runs on a copy; the caller's model is never modified. Failures of inference are not fatal: the pass
    then only knows what the model itself declares.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # inference is best effort (models > 2GB, custom ops, ...)
        inferred = model
    shapes: Dict[str, list] = {}

    def visit(graph: onnx.GraphProto) -> None:
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                shapes[vi.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
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


def convert_model(
    model: ModelLike,
    options: Optional[ConvertOptions] = None,
) -> Tuple[onnx.ModelProto, ConversionReport]:
    """Rewrite every ConvTranspose of ``model`` into Conv + periodic shuffle (+ crop).

    ``model`` is an ``onnx.ModelProto`` (left untouched) or a path. Returns the rewritten model and the
    per-node report. When no node is rewritten the returned model is an unchanged copy, so converting an
    already converted model changes nothing.
    """
    if not isinstance(model, onnx.ModelProto):
        from .model_io import load_model

        model = load_model(model)
    graph = gs.import_onnx(model)
    report = convert_graph(graph, options, shapes=infer_shapes(model))
    if not report.rewritten:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out, report
    out = gs.export_onnx(graph, do_type_check=False)
    _copy_model_fields(model, out)
    return out, report
