"""``inspect``: what the rewrite would do to each ConvTranspose of a model, and what it costs.

For every ConvTranspose (subgraphs and functions included): its input shape when known, attributes,
whether it can be rewritten (and why not), the planned emission (Conv kernel and channels, shuffle
kind, crop), multiply-accumulates and weight bytes before and after. Nothing is written.

The planned emission is obtained by running the very pass ``convert`` runs
(:func:`deconv2sub.rewrite.graph_pass.convert_graph`) on a private onnx-graphsurgeon copy of the
graph, so the two can never disagree; the caller's model is not modified.

Cost model (per sample, i.e. batch 1):

* ConvTranspose MACs = weight elements × input positions (each input pixel scatters
  ``C/g · M · prod(k)`` products);
* Conv MACs = weight elements × output positions of the Conv (zero taps of the sub-pixel kernel are
  counted: the runtime multiplies them too); shuffle and crop move data and cost no MACs;
* weight bytes = bytes of the constant weight and bias tensors feeding the (Transposed) convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .api import convert_model, infer_shapes
from .progress import ProgressFn, step
from .rewrite.domains import is_default_op
from .rewrite.graph_pass import convert_graph, iter_graphs
from .rewrite.options import ConvertOptions
from .targets.autotune import measurer

__all__ = ["NodeInspection", "InspectionReport", "inspect_model", "format_count", "format_bytes"]


@dataclass
class NodeInspection:
    """One ConvTranspose: what it is, what the rewrite plans for it, its cost before and after."""

    name: str
    graph: str  # "main" or a subgraph path
    input: Optional[str] = None  # data input tensor name
    output: Optional[str] = None
    input_shape: Optional[list] = None  # ints, dim_param strings or None per axis; None if unknown
    output_shape: Optional[list] = None
    dtype: Optional[str] = None
    weight_shape: Optional[List[int]] = None
    attributes: Dict[str, object] = field(default_factory=dict)
    rewritable: bool = False
    reason: Optional[str] = None  # why not, when not rewritable
    code: Optional[str] = None  # the refusal's machine-readable code, when not rewritable
    # Which emission strategy was chosen ("keep" when not rewritable) and why.
    choice: str = "keep"
    why: Optional[str] = None
    # conv_kernel, conv_channels, conv_dilations, conv_pads, group, shuffle, crop
    emission: Optional[dict] = None
    macs_before: Optional[int] = None
    macs_after: Optional[int] = None
    macs_per_input_pixel_before: Optional[int] = None
    macs_per_input_pixel_after: Optional[int] = None
    weight_bytes_before: Optional[int] = None
    weight_bytes_after: Optional[int] = None

    def attributes_text(self) -> str:
        """Compact attributes: ``k4 s2 p1 g1`` (per-axis lists only where the axes differ)."""
        a = self.attributes

        def compact(values) -> str:
            values = list(values)
            return (
                str(values[0])
                if values and all(v == values[0] for v in values)
                else "x".join(map(str, values))
            )

        parts = []
        kernel = a.get("kernel_shape") or (self.weight_shape[2:] if self.weight_shape else None)
        if kernel:
            parts.append("k" + compact(kernel))
        parts.append("s" + compact(a.get("strides") or [1]))
        if a.get("dilations") and any(d != 1 for d in a["dilations"]):
            parts.append("d" + compact(a["dilations"]))
        pads = a.get("pads")
        if pads and any(pads):
            parts.append(
                "p"
                + (str(pads[0]) if all(p == pads[0] for p in pads) else ",".join(map(str, pads)))
            )
        if a.get("output_padding") and any(a["output_padding"]):
            parts.append("op" + compact(a["output_padding"]))
        if a.get("auto_pad") not in (None, "NOTSET"):
            parts.append(str(a["auto_pad"]))
        if a.get("output_shape"):
            parts.append("out" + "x".join(map(str, a["output_shape"])))
        parts.append(f"g{a.get('group', 1)}")
        return " ".join(parts)

    def emission_text(self) -> str:
        """The planned emission in words ("Conv k2x2, 16 ch, ..."), or why the node is kept."""
        if not self.rewritable:
            return f"kept as ConvTranspose: {self.reason}"
        e = self.emission or {}
        kernel = "x".join(map(str, e.get("conv_kernel") or []))
        text = f"Conv k{kernel}, {e.get('conv_channels')} ch"
        pads = e.get("conv_pads")
        if pads and any(pads):
            text += " pads " + (
                str(pads[0]) if all(p == pads[0] for p in pads) else ",".join(map(str, pads))
            )
        dil = e.get("conv_dilations")
        if dil and any(d != 1 for d in dil):
            text += " d" + "x".join(map(str, dil))
        if e.get("group", 1) != 1:
            text += f" g{e['group']}"
        shuffle = e.get("shuffle") or "none"
        text += " + " + ("no shuffle" if shuffle == "none" else shuffle)
        crop = e.get("crop")
        text += ", " + ("no crop" if not crop else "crop " + " ".join(f"{b}/{x}" for b, x in crop))
        if e.get("empty_phases"):
            text += f", {e['empty_phases']} bias-only phase(s)"
        if e.get("sunk"):
            text += "; moves above the shuffle: " + ", ".join(e["sunk"])
        for note in e.get("notes") or []:
            text += f"; {note}"
        return text

    def to_dict(self) -> dict:
        """Every field as a JSON-ready dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Totals:
    nodes: int = 0
    rewritable: int = 0
    macs_before: int = 0
    macs_after: int = 0
    macs_unknown: int = 0  # nodes whose input size is unknown (not counted in the MAC totals)
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    weight_unknown: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class InspectionReport:
    """What ``inspect`` found in a model: one :class:`NodeInspection` per ConvTranspose."""
    model: Optional[str]
    opset: Optional[int]
    nodes: List[NodeInspection] = field(default_factory=list)
    # graph inputs as used for the sizes
    input_shapes: Dict[str, list] = field(default_factory=dict)
    strategy: str = "default"  # ConvertOptions.strategy / target the plan was made for
    target: str = "portable"

    @property
    def totals(self) -> Totals:
        """Sums of MACs and weight bytes over the nodes, with the count of unknown ones."""
        t = Totals(nodes=len(self.nodes), rewritable=sum(n.rewritable for n in self.nodes))
        for n in self.nodes:
            if n.macs_before is None or n.macs_after is None:
                t.macs_unknown += 1
            else:
                t.macs_before += n.macs_before
                t.macs_after += n.macs_after
            if n.weight_bytes_before is None or n.weight_bytes_after is None:
                t.weight_unknown += 1
            else:
                t.weight_bytes_before += n.weight_bytes_before
                t.weight_bytes_after += n.weight_bytes_after
        return t

    def summary(self) -> str:
        """One line: nodes rewritable and kept, total MACs and weights before → after."""
        t = self.totals
        text = f"{t.nodes} ConvTranspose: {t.rewritable} rewritable, {t.nodes - t.rewritable} kept"
        if t.nodes and t.macs_unknown < t.nodes:
            text += f"; MACs {format_count(t.macs_before)}→{format_count(t.macs_after)}"
        if t.nodes and t.weight_unknown < t.nodes:
            before, after = t.weight_bytes_before, t.weight_bytes_after
            text += f"; weights {format_bytes(before)}→{format_bytes(after)}"
        return text

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict (``inspect --json``)."""
        return {
            "model": self.model,
            "opset": self.opset,
            "strategy": self.strategy,
            "target": self.target,
            "input_shapes": self.input_shapes,
            "nodes": [n.to_dict() for n in self.nodes],
            "totals": self.totals.to_dict(),
            "summary": self.summary(),
        }

    def format_text(self, width: int = 80) -> str:
        """The report as a text table ``width`` columns wide."""
        return format_inspection(self, width)


# ---- number formatting ---------------------------------------------------------------------------
def format_count(n: Optional[float]) -> str:
    """3 significant digits with an SI suffix: ``950``, ``1.64M``, ``12.3G``."""
    if n is None:
        return "?"
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return (f"{v:.3g}" if v < 1000 else f"{v:.0f}") + suffix
    return f"{n:.0f}"


def format_bytes(n: Optional[float]) -> str:
    """``512B``, ``131kB``, ``1.64MB`` (decimal units)."""
    if n is None:
        return "?"
    n = float(n)
    for div, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}B"


# ---- graph helpers -------------------------------------------------------------------------------
def _constant(tensor) -> Optional[gs.Constant]:
    """The constant behind ``tensor``: an initializer or a Constant node's value."""
    if isinstance(tensor, gs.Constant):
        return tensor
    if (
        isinstance(tensor, gs.Variable)
        and len(tensor.inputs) == 1
        and tensor.inputs[0].op == "Constant"
    ):
        value = tensor.inputs[0].attrs.get("value")
        if isinstance(value, gs.Constant):
            return value
    return None


def _const_bytes(tensor, depth: int = 3) -> Optional[int]:
    """Bytes of the constant data a weight tensor comes from (None when computed at run time).

    Follows a few nodes back (e.g. a DequantizeLinear of an int8 initializer).
    """
    if tensor is None:
        return 0
    const = _constant(tensor)
    if const is not None:
        return int(np.prod(const.shape, dtype=np.int64)) * np.dtype(const.dtype).itemsize
    if depth > 0 and isinstance(tensor, gs.Variable) and len(tensor.inputs) == 1:
        parts = [
            _const_bytes(t, depth - 1) for t in tensor.inputs[0].inputs if t is not None and t.name
        ]
        if parts and all(p is not None for p in parts):
            return int(sum(parts))
    return None


def _tensor_shape(tensor, shapes: Mapping[str, list], depth: int = 3) -> Optional[list]:
    if tensor is None:
        return None
    if shapes.get(tensor.name) is not None:
        return list(shapes[tensor.name])
    const = _constant(tensor)
    if const is not None:
        return [int(d) for d in const.shape]
    if getattr(tensor, "shape", None) is not None:
        return list(tensor.shape)
    if (
        depth > 0
        and isinstance(tensor, gs.Variable)
        and len(tensor.inputs) == 1
        and tensor.inputs[0].inputs
    ):
        # Shape-preserving producers of weights (DequantizeLinear, Cast, Identity).
        if tensor.inputs[0].op in ("DequantizeLinear", "Cast", "Identity"):
            return _tensor_shape(tensor.inputs[0].inputs[0], shapes, depth - 1)
    return None


def _known_ints(dims: Optional[Sequence]) -> Optional[List[int]]:
    if dims is None or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
        return None
    return [int(d) for d in dims]


def _conv_out(size: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return (size + pb + pe - d * (k - 1) - 1) // s + 1


def _attributes(node: gs.Node) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for key in (
        "kernel_shape",
        "strides",
        "dilations",
        "pads",
        "output_padding",
        "output_shape",
        "auto_pad",
        "group",
    ):
        if key in node.attrs:
            v = node.attrs[key]
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, (list, tuple)):
                v = [int(x) for x in v]
            elif isinstance(v, (np.integer,)):
                v = int(v)
            out[key] = v
    out.setdefault("group", 1)
    return out


def _opset(model: onnx.ModelProto) -> Optional[int]:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


# ---- the inspection ------------------------------------------------------------------------------
def inspect_model(
    model: onnx.ModelProto,
    options: Optional[ConvertOptions] = None,
    input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
    path: Optional[str] = None,
    progress: Optional[ProgressFn] = None,
) -> InspectionReport:
    """Inspect every ConvTranspose of ``model`` (not modified).

    ``input_shapes`` (default: ``options.input_shapes``) fixes symbolic input dims for the
    size-dependent numbers (MACs, output shapes) and for ``strategy="auto"``'s measurements; the
    planned emission is what ``convert`` (with the same options and input shapes) would emit for the
    model as it is.
    """
    options = options or ConvertOptions()
    input_shapes = input_shapes or options.input_shapes
    step(progress, "inferring shapes")
    plan_shapes = infer_shapes(model)
    size_shapes = plan_shapes
    if input_shapes:
        size_shapes = infer_shapes(model, input_shapes)

    step(progress, "reading ConvTranspose nodes")
    graph = gs.import_onnx(model)
    before: List[Tuple[str, gs.Node, dict]] = []
    for g, gpath in list(iter_graphs(graph)):
        for node in g.nodes:
            if not is_default_op(node, "ConvTranspose"):
                continue
            before.append((gpath, node, _snapshot(node, size_shapes)))

    step(progress, "planning the rewrite")
    sizes = size_shapes if input_shapes else None
    measure = measurer(convert_model) if options.strategy == "auto" else None
    report = convert_graph(graph, options, shapes=plan_shapes, sizes=sizes, measure=measure)
    entries = {(e.graph, e.output): e for e in report.nodes}
    graphs = {gpath: g for g, gpath in iter_graphs(graph)}

    result = InspectionReport(model=path, opset=_opset(model), strategy=options.strategy,
                              target=report.target or "portable")
    for vi in model.graph.input:
        if vi.name in size_shapes and vi.name not in {t.name for t in model.graph.initializer}:
            result.input_shapes[vi.name] = size_shapes[vi.name]
    for i, (gpath, node, snap) in enumerate(before):
        step(progress, "measuring nodes", i, len(before))
        entry = entries.get((gpath, snap["output"]))
        if entry is None and i < len(report.nodes):
            entry = report.nodes[i]
        result.nodes.append(_inspect_node(gpath, snap, entry, graphs.get(gpath), size_shapes))
    step(progress, "measuring nodes", len(before), len(before))
    return result


def _snapshot(node: gs.Node, shapes: Mapping[str, list]) -> dict:
    """What we need from the original node, taken before the pass rewires it."""
    x = node.inputs[0] if node.inputs else None
    w = node.inputs[1] if len(node.inputs) > 1 else None
    b = (
        node.inputs[2]
        if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name
        else None
    )
    y = node.outputs[0] if node.outputs else None
    weight_shape = _known_ints(_tensor_shape(w, shapes))
    w_bytes, b_bytes = _const_bytes(w), _const_bytes(b)
    dtype = None
    for t in (x, w):
        if t is not None and getattr(t, "dtype", None) is not None:
            try:
                dtype = np.dtype(t.dtype).name
                break
            except TypeError:
                pass
    return {
        "name": node.name or (y.name if y is not None else "<unnamed>"),
        "input": x.name if x is not None else None,
        "output": y.name if y is not None else None,
        "input_shape": _tensor_shape(x, shapes),
        "output_shape": None if y is None else shapes.get(y.name),
        "weight_shape": weight_shape,
        "attributes": _attributes(node),
        "weight_bytes": None if w_bytes is None or b_bytes is None else w_bytes + b_bytes,
        "dtype": dtype,
    }


def _new_conv_costs(convs: list, x_name: str, spatial, shapes: Mapping[str, list]) -> tuple:
    """MACs, MACs per input pixel and weight bytes of the emitted Convs (None where unknown).

    ``x_name`` is the ConvTranspose input, ``spatial`` its known spatial sizes (or None).
    """
    macs, per_pixel, wbytes = 0, 0, 0
    for conv in convs:
        # strategy "pointwise_gemm": weight [rows, C] x input [C, prod(spatial)]
        gemm = conv.op == "Gemm"
        wt = conv.inputs[0 if gemm else 1] if len(conv.inputs) > 1 else None
        bt = (
            conv.inputs[2]
            if len(conv.inputs) > 2 and conv.inputs[2] is not None and conv.inputs[2].name
            else None
        )
        shape = _known_ints(_tensor_shape(wt, shapes))
        wb, bb = _const_bytes(wt), _const_bytes(bt)
        wbytes = None if wbytes is None or wb is None or bb is None else wbytes + wb + bb
        if shape is None:
            macs = per_pixel = None
            continue
        numel = int(np.prod(shape, dtype=np.int64))
        per_pixel = None if per_pixel is None else per_pixel + numel
        if gemm:  # batch 1, 1x1 kernel without pads: one MAC per weight and input pixel
            macs = (
                None
                if macs is None or spatial is None
                else macs + numel * int(np.prod(spatial, dtype=np.int64))
            )
            continue
        # The Conv reads the ConvTranspose's input, so its input size is known when that one is.
        in_spatial = (
            spatial
            if conv.inputs[0].name == x_name
            else _known_ints((_tensor_shape(conv.inputs[0], shapes) or [None, None])[2:])
        )
        if macs is None or in_spatial is None or conv.op != "Conv":
            macs = None
            continue
        k = shape[2:]
        r = len(k)
        s = list(conv.attrs.get("strides") or [1] * r)
        d = list(conv.attrs.get("dilations") or [1] * r)
        p = list(conv.attrs.get("pads") or [0] * (2 * r))
        out = [_conv_out(in_spatial[a], k[a], s[a], d[a], p[a], p[a + r]) for a in range(r)]
        macs += numel * int(np.prod(out, dtype=np.int64))
    return macs, per_pixel, wbytes


def _inspect_node(
    gpath: str, snap: dict, entry, g: Optional[gs.Graph], shapes: Mapping[str, list]
) -> NodeInspection:
    n = NodeInspection(
        name=snap["name"],
        graph=gpath,
        input=snap["input"],
        output=snap["output"],
        input_shape=snap["input_shape"],
        output_shape=snap["output_shape"],
        dtype=snap["dtype"],
        weight_shape=snap["weight_shape"],
        attributes=snap["attributes"],
        weight_bytes_before=snap["weight_bytes"],
    )
    spatial = None
    if (
        n.input_shape is not None
        and n.weight_shape is not None
        and len(n.input_shape) == len(n.weight_shape)
    ):
        spatial = _known_ints(n.input_shape[2:])
    w_numel = None if n.weight_shape is None else int(np.prod(n.weight_shape, dtype=np.int64))
    n.macs_per_input_pixel_before = w_numel
    if w_numel is not None and spatial is not None:
        n.macs_before = w_numel * int(np.prod(spatial, dtype=np.int64))

    if entry is None or not entry.rewritten:
        n.rewritable, n.choice = False, "keep"
        n.reason = n.why = entry.reason if entry is not None else "not reached by the rewrite pass"
        n.code = entry.code if entry is not None else "not_reached"
        n.macs_after, n.macs_per_input_pixel_after = n.macs_before, n.macs_per_input_pixel_before
        n.weight_bytes_after = n.weight_bytes_before
        return n

    n.rewritable = True
    n.choice = getattr(entry, "strategy", None) or "subpixel"
    n.why = getattr(entry, "strategy_reason", None)
    n.emission = {
        k: getattr(entry, k, None)
        for k in (
            "conv_kernel",
            "conv_channels",
            "conv_dilations",
            "conv_pads",
            "group",
            "shuffle",
            "crop",
            "empty_phases",
            "strategy",
            "sunk",
            "notes",
        )
    }
    new = set(entry.new_nodes or [])
    convs = [
        m
        for m in (g.nodes if g is not None else [])
        if m.name in new and m.op in ("Conv", "ConvTranspose", "Gemm")
    ]
    macs, per_pixel, wbytes = _new_conv_costs(convs, n.input, spatial, shapes)
    if not convs:
        macs = per_pixel = wbytes = None
    n.macs_after = macs if spatial is not None else None
    n.macs_per_input_pixel_after = per_pixel
    n.weight_bytes_after = wbytes
    return n


# ---- text ----------------------------------------------------------------------------------------
# Three lines per node: its name (full width: exported names are long), then input shape,
# attributes, MACs and weights in columns, then the planned emission. Column widths after the
# 3-column indent.
_INDENT = 3
_COLS = [("input", 15), ("attributes", 17), ("MACs", 18), ("weights", 0)]


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _fit_end(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _shape_cell(shape: Optional[Sequence]) -> str:
    if shape is None:
        return "?"
    # ONNX shape inference names unknown dims "unk__N": they say nothing to a user.
    return "x".join(
        "?" if d is None or (isinstance(d, str) and d.startswith("unk__")) else str(d)
        for d in shape
    )


def _row(first: str, cells: List[str]) -> str:
    out = first.ljust(_INDENT)
    for (_, w), c in zip(_COLS, cells):
        out += c.ljust(w) if w else c
    return out.rstrip()


def format_inspection(report: InspectionReport, width: int = 80) -> str:
    """Per ConvTranspose: a name line, a line of numbers, the planned emission; then totals.

    Every line fits in ``width`` columns (``width`` >= 72).
    """
    import textwrap

    lines: List[str] = []
    title = f"{report.model or 'model'}" + (f" (opset {report.opset})" if report.opset else "")
    lines.append(_fit(title, width))
    lines.append(f"emission: strategy {report.strategy}"
                 + (f", rule for target {report.target}" if report.strategy == "default" else ""))
    if report.input_shapes:
        shapes = ", ".join(f"{k}:{_shape_cell(v)}" for k, v in report.input_shapes.items())
        lines += textwrap.wrap(
            "inputs: " + shapes, width, subsequent_indent="    ", break_on_hyphens=False
        )
    if not report.nodes:
        lines.append("no ConvTranspose nodes: nothing to rewrite")
        return "\n".join(lines)

    rule = "-" * width
    lines.append(_row("#", ["node"]))
    lines.append(_row("", [h if h != "MACs" else "MACs (per sample)" for h, _ in _COLS]))
    lines.append(_row("", ["planned emission"]))
    lines.append(rule)
    for i, n in enumerate(report.nodes, 1):
        lines += _node_lines(i, n, width)
    lines.append(rule)
    lines += _total_lines(report.totals)
    return "\n".join(lines)


def _node_lines(i: int, n: NodeInspection, width: int) -> List[str]:
    """The lines of node number ``i``: its name, its numbers, the planned emission and why."""
    import textwrap

    pad = " " * _INDENT
    name = n.name if n.graph == "main" else f"{n.name}  [{n.graph}]"
    lines = [_row(str(i), [_fit(name, width - _INDENT)])]
    attrs = n.attributes_text()
    cells = [
        _fit(_shape_cell(n.input_shape), _COLS[0][1] - 1),
        _fit_end(attrs, _COLS[1][1] - 1),
        f"{format_count(n.macs_before)}→{format_count(n.macs_after)}",
        f"{format_bytes(n.weight_bytes_before)}→{format_bytes(n.weight_bytes_after)}",
    ]
    lines.append(_row("", cells))
    detail = n.emission_text()
    if len(attrs) > _COLS[1][1] - 1:
        detail = f"[{attrs}] " + detail
    lines += textwrap.wrap(detail, width, initial_indent=pad, subsequent_indent=pad + "  ",
                           break_on_hyphens=False)
    if n.why:  # which rule of which profile chose the emission, and what it refused
        lines += textwrap.wrap(
            "why: " + n.why,
            width,
            initial_indent=pad,
            subsequent_indent=pad + "  ",
            break_on_hyphens=False,
        )
    return lines


def _total_lines(t: Totals) -> List[str]:
    """The totals line, the after/before ratios and the notes on unknown sizes."""
    pad = " " * _INDENT
    lines: List[str] = []
    macs = (
        f"{format_count(t.macs_before)}→{format_count(t.macs_after)}"
        if t.macs_unknown < t.nodes
        else "?"
    )
    wts = (f"{format_bytes(t.weight_bytes_before)}→{format_bytes(t.weight_bytes_after)}"
           if t.weight_unknown < t.nodes else "?")
    label = f"total: {t.rewritable} of {t.nodes} rewritable"
    span = _COLS[0][1] + _COLS[1][1]
    if len(label) >= span:
        lines.append(pad + label)
        label = ""
    lines.append((pad + label.ljust(span) + macs.ljust(_COLS[2][1]) + wts).rstrip())
    if t.macs_before and t.macs_unknown < t.nodes:
        lines.append(
            f"MACs after/before: {t.macs_after / t.macs_before:.2f}x"
            + (
                ""
                if not t.weight_bytes_before
                else f"; weights after/before: {t.weight_bytes_after / t.weight_bytes_before:.2f}x"
            )
        )
    if t.macs_unknown and t.macs_unknown < t.nodes:
        lines.append(
            f"note: {t.macs_unknown} node(s) with unknown input size are not in the MAC total "
            "(give --input-shape)"
        )
    elif t.macs_unknown:
        lines.append("note: input sizes unknown: give --input-shape NAME:dims for MAC counts")
    return lines
