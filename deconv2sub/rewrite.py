"""The graph pass: every ConvTranspose with a constant weight becomes Conv + shuffle (+ crop).

Works on an onnx-graphsurgeon ``Graph`` in place (subgraphs of If/Loop/Scan and model-local functions
included). For each node, :func:`check` either returns the material for the rewrite or a one-line reason
to leave the node alone (weight known only at run time, unsupported attributes, ...); :func:`rewrite`
applies the plan from :mod:`deconv2sub.plan`.

Invariants the pass keeps:

* the ConvTranspose's output tensor keeps its name and identity, so consumers and graph outputs are
  untouched; new nodes/tensors get unique names derived from the node's name;
* the original weight/bias tensors are not modified (a weight shared with other nodes stays valid);
  unused ones simply drop out on export;
* no size that the original left symbolic is baked in (see :mod:`deconv2sub.shuffle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import onnx_graphsurgeon as gs

from .plan import ConvTransposeAttrs, PlanError, SubPixelPlan, make_plan
from .report import REWRITTEN, SKIPPED, ConversionReport, NodeReport
from .shuffle import Emitter, emit_crop, emit_shuffle, shuffle_kind

__all__ = ["ConvertOptions", "convert_graph", "iter_graphs"]

_FLOAT_DTYPES = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}


@dataclass
class ConvertOptions:
    """Knobs of the rewrite.

    shuffle: "auto" (DepthToSpace where it can express the shuffle), "reshape" (always Reshape/Transpose).
    order: "auto" (CRD when the opset has DepthToSpace CRD or group > 1, else DCR), "CRD" or "DCR".
    """

    shuffle: str = "auto"
    order: str = "auto"


@dataclass
class _Material:
    weight: np.ndarray
    bias: Optional[np.ndarray]
    attrs: ConvTransposeAttrs
    in_spatial: Optional[List[Optional[int]]]


def iter_graphs(graph: gs.Graph, path: str = "main") -> Iterator[Tuple[gs.Graph, str]]:
    """The graph, its functions and every nested subgraph (If/Loop/Scan bodies), with a readable path."""
    yield graph, path
    for node in graph.nodes:
        for key, value in node.attrs.items():
            subs = value if isinstance(value, (list, tuple)) else [value]
            for i, sub in enumerate(subs):
                if isinstance(sub, gs.Graph):
                    label = f"{path}/{node.name or node.op}.{key}" + (f"[{i}]" if len(subs) > 1 else "")
                    yield from iter_graphs(sub, label)
    for func in getattr(graph, "functions", None) or []:
        yield from iter_graphs(func, f"function:{func.name}")


def _constant_values(tensor) -> Optional[np.ndarray]:
    """Values of a tensor known before run time: an initializer or the output of a Constant node."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    if isinstance(tensor, gs.Variable) and len(tensor.inputs) == 1:
        producer = tensor.inputs[0]
        if producer.op == "Constant" and producer.domain in (None, "", "ai.onnx"):
            value = producer.attrs.get("value")
            if isinstance(value, gs.Constant):
                return np.asarray(value.values)
            for key in ("value_float", "value_floats"):
                if key in producer.attrs:
                    return np.asarray(producer.attrs[key], dtype=np.float32)
    return None


def _describe_source(tensor) -> str:
    if isinstance(tensor, gs.Variable) and not tensor.inputs:
        return f"'{tensor.name}' is a graph input (known only at run time)"
    if isinstance(tensor, gs.Variable) and tensor.inputs:
        return f"'{tensor.name}' is computed at run time by {tensor.inputs[0].op} node '{tensor.inputs[0].name}'"
    return f"'{tensor.name}' is not a constant"


def _ints(attrs: dict, key: str) -> Optional[List[int]]:
    value = attrs.get(key)
    return None if value is None else [int(v) for v in value]


def check(node: gs.Node, shapes: Optional[Dict[str, Sequence]] = None) -> Tuple[Optional[_Material], Optional[str]]:
    """Return (material, None) when the node can be rewritten, else (None, reason)."""
    if len(node.inputs) < 2 or node.inputs[1] is None or node.inputs[1].name == "":
        return None, "ConvTranspose has no weight input"
    if not node.outputs:
        return None, "ConvTranspose has no output"
    x, w = node.inputs[0], node.inputs[1]
    weight = _constant_values(w)
    if weight is None:
        return None, f"weight {_describe_source(w)}"
    if weight.dtype not in _FLOAT_DTYPES:
        return None, f"weight dtype {weight.dtype} is not supported (float16/float32/float64)"
    bias = None
    if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name != "":
        bias = _constant_values(node.inputs[2])
        if bias is None:
            return None, f"bias {_describe_source(node.inputs[2])}"
    a = node.attrs
    attrs = ConvTransposeAttrs(
        strides=_ints(a, "strides"),
        dilations=_ints(a, "dilations"),
        pads=_ints(a, "pads"),
        output_padding=_ints(a, "output_padding"),
        output_shape=_ints(a, "output_shape"),
        auto_pad=(a.get("auto_pad") or "NOTSET"),
        group=int(a.get("group", 1)),
        kernel_shape=_ints(a, "kernel_shape"),
    )
    if isinstance(attrs.auto_pad, bytes):
        attrs = ConvTransposeAttrs(**{**attrs.__dict__, "auto_pad": attrs.auto_pad.decode()})
    n = weight.ndim - 2
    in_spatial = None
    shape = None
    if isinstance(x, gs.Tensor) and x.shape is not None:
        shape = list(x.shape)
    if shapes is not None and x.name in shapes and shapes[x.name] is not None:
        shape = list(shapes[x.name])
    if shape is not None and len(shape) == n + 2:
        in_spatial = [v if isinstance(v, (int, np.integer)) and v > 0 else None for v in shape[2:]]
        in_spatial = [None if v is None else int(v) for v in in_spatial]
        c = shape[1]
        if isinstance(c, (int, np.integer)) and c > 0 and int(c) != weight.shape[0]:
            return None, f"input has {c} channels but the weight expects {weight.shape[0]}"
    elif shape is not None:
        return None, f"input rank {len(shape)} does not match the weight rank {weight.ndim}"
    return _Material(weight, bias, attrs, in_spatial), None


def _unique_namer(graph: gs.Graph) -> Callable[[str], str]:
    used = set()
    for g, _ in iter_graphs(graph):
        used.update(t for t in g.tensors().keys())
        used.update(n.name for n in g.nodes if n.name)
        used.update(t.name for t in g.inputs + g.outputs)

    def unique(name: str) -> str:
        candidate, i = name, 1
        while candidate in used:
            candidate = f"{name}_{i}"
            i += 1
        used.add(candidate)
        return candidate

    return unique


def _graph_opset(graph: gs.Graph) -> int:
    opset = getattr(graph, "opset", None)
    if opset is None:
        domains = getattr(graph, "import_domains", None) or []
        for d in domains:
            if d.domain in ("", "ai.onnx"):
                return int(d.version)
        return 13
    return int(opset)


def rewrite(
    graph: gs.Graph,
    node: gs.Node,
    material: _Material,
    unique: Callable[[str], str],
    opset: int,
    options: ConvertOptions,
) -> NodeReport:
    """Replace ``node`` in ``graph`` by Conv + shuffle (+ crop). Raises PlanError if it cannot be planned."""
    group = material.attrs.group
    order = options.order
    if order == "auto":
        order = "CRD" if (group != 1 or opset >= 11) else "DCR"
    if order == "DCR" and group != 1:
        order = "CRD"
    plan: SubPixelPlan = make_plan(material.weight, material.bias, material.attrs, material.in_spatial, order)
    kind = shuffle_kind(plan, opset, options.shuffle)
    if kind == "Reshape/Transpose" and plan.order != "CRD":
        plan = make_plan(material.weight, material.bias, material.attrs, material.in_spatial, "CRD")
    if kind == "Reshape/Transpose" and opset < 5:
        raise PlanError(f"opset {opset} has no Reshape with a shape input (needs >= 5)")

    base = node.name or node.outputs[0].name
    em = Emitter(base, unique, opset)
    x = node.inputs[0]
    y = node.outputs[0]
    dtype = plan.weight.dtype
    conv_inputs = [x, em.const("subpixel_weight", plan.weight)]
    if plan.bias is not None:
        conv_inputs.append(em.const("subpixel_bias", plan.bias))
    stages = [kind != "none", plan.needs_crop]
    conv_out = y if not any(stages) else em.var("subpixel_conv_out", dtype)
    em.node(
        "Conv",
        "subpixel_conv",
        conv_inputs,
        [conv_out],
        {
            "kernel_shape": list(plan.conv_kernel),
            "strides": [1] * plan.rank,
            "dilations": plan.conv_dilations,
            "pads": plan.conv_pads,
            "group": plan.group,
        },
    )
    current = conv_out
    if kind != "none":
        shuffled = y if not plan.needs_crop else em.var("subpixel_shuffled", dtype)
        emit_shuffle(em, plan, kind, current, shuffled, material.in_spatial)
        current = shuffled
    crop = None
    if plan.needs_crop:
        crop = emit_crop(em, plan, current, y)

    # Splice: the new nodes take the old node's place, so the node list stays topologically sorted.
    index = next(i for i, n in enumerate(graph.nodes) if n is node)
    node.inputs.clear()
    node.outputs.clear()
    graph.nodes[index : index + 1] = em.nodes

    return NodeReport(
        name=node.name,
        graph="",
        status=REWRITTEN,
        output=y.name,
        rank=plan.rank,
        strides=list(plan.strides),
        kernel=[a.kernel for a in plan.axes],
        group=plan.group,
        conv_kernel=list(plan.conv_kernel),
        conv_channels=int(plan.weight.shape[0]),
        conv_dilations=plan.conv_dilations,
        conv_pads=plan.conv_pads,
        shuffle=kind,
        crop=crop,
        empty_phases=plan.empty_phases,
        new_nodes=[n.name for n in em.nodes],
    )


def convert_graph(
    graph: gs.Graph,
    options: Optional[ConvertOptions] = None,
    shapes: Optional[Dict[str, Sequence]] = None,
) -> ConversionReport:
    """Rewrite every ConvTranspose of ``graph`` (and its subgraphs/functions) in place.

    ``shapes`` optionally maps tensor names to shapes (ints, or strings/None for symbolic sizes), e.g.
    from ONNX shape inference; the graph's own tensor shapes are used otherwise. Returns the per-node
    report; nodes that cannot be rewritten stay as they are, with a reason.
    """
    options = options or ConvertOptions()
    unique = _unique_namer(graph)
    report = ConversionReport()
    top_opset = _graph_opset(graph)
    for g, path in list(iter_graphs(graph)):
        opset = _graph_opset(g) if getattr(g, "opset", None) is not None else top_opset
        for node in list(g.nodes):
            if node.op != "ConvTranspose" or node.domain not in (None, "", "ai.onnx"):
                continue
            label = node.name or (node.outputs[0].name if node.outputs else "<unnamed>")
            material, reason = check(node, shapes)
            if material is not None:
                try:
                    entry = rewrite(g, node, material, unique, opset, options)
                except PlanError as err:
                    reason = str(err)
                else:
                    entry.name = label
                    entry.graph = path
                    report.nodes.append(entry)
                    continue
            report.nodes.append(
                NodeReport(
                    name=label,
                    graph=path,
                    status=SKIPPED,
                    reason=reason,
                    output=node.outputs[0].name if node.outputs else None,
                )
            )
    return report
