"""The graph pass: every ConvTranspose with a constant weight becomes Conv + shuffle (+ crop).

Works on an onnx-graphsurgeon ``Graph`` in place (subgraphs of If/Loop/Scan and model-local
functions included). For each node, :func:`deconv2sub.rewrite.match.check` either returns the
material for the rewrite or a :class:`deconv2sub.rewrite.refusal.Refusal`; the chooser
(:func:`deconv2sub.targets.chooser.choose`) picks the emission (following fallbacks itself) or
refuses; the emission (:mod:`deconv2sub.rewrite.emissions`) writes the nodes; the pass splices them
in place of the node, sinks consumers above the shuffle (:mod:`deconv2sub.rewrite.sinking`) and
reports.

Invariants the pass keeps:

* the ConvTranspose's output tensor keeps its name and identity, so consumers and graph outputs are
  untouched; new nodes/tensors get unique names derived from the node's name;
* the original weight/bias tensors are not modified (a weight shared with other nodes stays valid);
  unused ones simply drop out on export;
* no size that the original left symbolic is baked in (see :mod:`deconv2sub.rewrite.shuffle`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx_graphsurgeon as gs

from ..plan.subpixel import PlanError, SubPixelPlan, layout_row_channels
from ..report import REWRITTEN, SKIPPED, ConversionReport, NodeReport
from ..targets import resolve as resolve_target
from ..targets.chooser import Measurer, choose
from . import fold
from .domains import is_default_op
from .emissions import registry
from .emissions.base import Choice, EmitRequest, Emitted, plan_of
from .match import check
from .material import NodeMaterial, Planner
from .options import ConvertOptions
from .refusal import Refusal
from .shuffle import Emitter
from .sinking import SinkContext, sink_consumers

__all__ = ["convert_graph", "iter_graphs", "rewrite_node"]


def iter_graphs(
    graph: gs.Graph, path: str = "main", functions: bool = True
) -> Iterator[Tuple[gs.Graph, str]]:
    """The graph, its functions and every nested subgraph, each with a readable path.

    Nested subgraphs: the bodies of If/Loop/Scan.

    Every graph is yielded once: a gs ``Function`` also lists the model's functions (itself
    included), so functions are only taken from the top-level graph.
    """
    yield graph, path
    for node in graph.nodes:
        for key, value in node.attrs.items():
            subs = value if isinstance(value, (list, tuple)) else [value]
            for i, sub in enumerate(subs):
                if isinstance(sub, gs.Graph):
                    label = f"{path}/{node.name or node.op}.{key}" + (
                        f"[{i}]" if len(subs) > 1 else ""
                    )
                    yield from iter_graphs(sub, label, functions=False)
    if functions and not isinstance(graph, gs.Function):
        for func in getattr(graph, "functions", None) or []:
            yield from iter_graphs(func, f"function:{func.domain}.{func.name}", functions=False)


def _unique_namer(graph: gs.Graph) -> Callable[[str], str]:
    """A namer that never repeats a node or tensor name of ``graph`` (subgraphs included)."""
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
    """The default-domain opset of ``graph`` (13 when it declares none)."""
    opset = getattr(graph, "opset", None)
    if opset is None:
        domains = getattr(graph, "import_domains", None) or []
        for d in domains:
            if d.domain in ("", "ai.onnx"):
                return int(d.version)
        return 13
    return int(opset)


def _splice(graph: gs.Graph, node: gs.Node, nodes: List[gs.Node], cursors: Dict[int, int]) -> int:
    """Splice ``nodes`` in place of ``node``.

    Put ``nodes`` in the place of ``node`` (the node list stays topologically sorted); returns
    their index. The pass visits nodes in order: searching from the previous splice of this graph
    (``cursors``) keeps a big graph linear.
    """
    hint = cursors.get(id(graph), 0)
    index = next(
        (i for i in range(min(hint, len(graph.nodes)), len(graph.nodes)) if graph.nodes[i] is node),
        None,
    )
    if index is None:
        index = next(i for i, n in enumerate(graph.nodes) if n is node)
    node.inputs.clear()
    node.outputs.clear()
    graph.nodes[index : index + 1] = nodes
    cursors[id(graph)] = index
    return index


def _sink(
    graph: gs.Graph, em: Emitter, emitted: Emitted, y, index: int, unique, base: str
) -> tuple:
    """Sink the consumers of ``y`` above the shuffle.

    Move consumers of ``y`` above the shuffle; returns (sunk consumers, the tensor the chain
    rejoins the graph at).
    """
    plan, split = emitted.plan, emitted.split
    channels = (
        plan.row_channels()
        if emitted.rows_layout is None
        else layout_row_channels(emitted.rows_layout)
    )
    if emitted.row_order is not None:
        channels = channels[emitted.row_order]
    conv_node = emitted.conv_node
    ctx = SinkContext(
        graph,
        conv_node,
        emitted.conv_out,
        y,
        em.nodes[em.nodes.index(conv_node) + 1 :],
        channels,
        plan.rank,
        unique,
        base,
        branches=list(conv_node.inputs) if split is not None else None,
        branch_rows=None
        if split is None
        else layout_row_channels(split.conv_rows(plan.out_channels)),
        start=index,
        matrix=emitted.matrix,
    )
    sunk = sink_consumers(ctx)
    return sunk, ctx.y.name


def _report(
    node: gs.Node,
    y,
    material: NodeMaterial,
    choice: Choice,
    emitted: Emitted,
    em: Emitter,
    sunk: List[str],
    rejoin: str,
) -> NodeReport:
    """The NodeReport of a rewritten node."""
    plan, split = emitted.plan, emitted.split
    phase_info = None  # per-phase: (largest phase kernel, its pads)
    if split is not None:
        biggest = max(split.convs, key=lambda c: int(np.prod(c.weight.shape[2:])))
        phase_info = (list(biggest.weight.shape[2:]), list(biggest.pads))
    macs_before, macs_after, macs_ratio = _macs(material, plan, split)
    warnings = []
    if macs_ratio is not None and macs_ratio > MACS_WARN_RATIO:
        warnings.append(f"MACs {macs_ratio:.2f}x the original's: {_macs_cause(plan, split)}")
    return NodeReport(
        macs_before=macs_before,
        macs_after=macs_after,
        macs_ratio=macs_ratio,
        warnings=warnings,
        name=node.name,
        graph="",
        status=REWRITTEN,
        output=y.name,
        rank=plan.rank,
        strides=[int(v) for v in (material.attrs.strides or [1] * plan.rank)],
        kernel=[a.kernel for a in plan.axes],
        group=plan.group,
        conv_kernel=list(plan.conv_kernel) if phase_info is None else phase_info[0],
        conv_channels=int(plan.weight.shape[0]),
        conv_dilations=plan.conv_dilations,
        conv_pads=plan.conv_pads if phase_info is None else phase_info[1],
        shuffle=emitted.kind,
        crop=emitted.crop,
        empty_phases=plan.empty_phases,
        new_nodes=[n.name for n in em.nodes],
        strategy=choice.strategy,
        strategy_reason=choice.reason + emitted.note,
        declined=[list(pair) for pair in choice.declined],
        sunk=sunk,
        rejoin=rejoin,
    )


def rewrite_node(
    graph: gs.Graph,
    node: gs.Node,
    material: NodeMaterial,
    choice: Choice,
    unique: Callable[[str], str],
    opset: int,
    options: ConvertOptions,
    cursors: Optional[Dict[int, int]] = None,
) -> NodeReport:
    """Rewrite one node as its chosen emission.

    Replace ``node`` in ``graph`` by the emission of ``choice`` (from the chooser: it applies).
    Raises PlanError if the node cannot be planned.
    """
    plan = plan_of(material, choice, options)
    base = node.name or node.outputs[0].name
    em = Emitter(base, unique, opset)
    y = node.outputs[0]
    emitted = registry.get(choice.strategy).emit(
        EmitRequest(node, material, choice, plan, em, opset, options)
    )
    index = _splice(graph, node, em.nodes, {} if cursors is None else cursors)
    sunk: List[str] = []
    rejoin = y.name
    if options.sink and emitted.conv_out is not y and material.after is None:
        sunk, rejoin = _sink(graph, em, emitted, y, index, unique, base)
    return _report(node, y, material, choice, emitted, em, sunk, rejoin)


MACS_WARN_RATIO = 1.25  # the report warns when a rewrite costs more multiply-accumulates than this


def _macs(material: NodeMaterial, plan: SubPixelPlan, split) -> tuple:
    """Multiply-accumulates of the original and of the rewrite.

    (MACs before, after, after / before) per sample: a ConvTranspose multiplies every weight with
    every input position; the Conv(s) every weight with every Conv output position (zero taps
    included: runtimes multiply them too). Sizes unknown: None, None and the per-position ratio.
    """
    before_w = int(np.prod(material.weight.shape, dtype=np.int64))
    weights = [plan.weight] if split is None else [c.weight for c in split.convs]
    after_w = sum(int(np.prod(w.shape, dtype=np.int64)) for w in weights)
    ratio = after_w / before_w if before_w else None
    spatial = material.in_spatial
    if spatial is None or any(v is None for v in spatial):
        return None, None, ratio
    before = before_w * int(np.prod(spatial, dtype=np.int64))
    positions = int(np.prod([v + a.growth for v, a in zip(spatial, plan.axes)], dtype=np.int64))
    after = after_w * positions
    return before, after, (after / before if before else None)


def _macs_cause(plan: SubPixelPlan, split) -> str:
    """Why the rewrite costs more MACs than the original."""
    odd = [
        f"kernel {a.kernel} not a multiple of stride {a.stride}"
        for a in plan.axes
        if a.stride > 1 and (a.dilation * (a.kernel - 1) + 1) % a.stride
    ]
    if odd:
        return "zero taps (" + "; ".join(dict.fromkeys(odd)) + ")"
    if plan.empty_phases:
        return f"{plan.empty_phases} phase(s) without taps"
    grown = [a for a in plan.axes
             if a.taps * a.conv_dilation > (a.dilation * (a.kernel - 1)) // a.stride + 1]
    if grown:
        return "the crop folded into a larger kernel (fold_crop \"always\")"
    return "the Conv's padding (output larger than the input by the kernel span)"


def _node_entry(
    g: gs.Graph, node: gs.Node, options: ConvertOptions, opset: int, state: dict, shapes, sizes
) -> NodeReport:
    """Check, choose, emit one node; its report (skipped with the refusal when it stays)."""
    label = node.name or (node.outputs[0].name if node.outputs else "<unnamed>")
    material = check(
        node,
        shapes,
        graph=g,
        opset=opset,
        cache=state["cache"],
        sizes=sizes,
        planner=state["planner"],
    )
    result: Union[NodeMaterial, Choice, Refusal, NodeReport] = material
    try:
        if isinstance(material, NodeMaterial):
            result = choose(material, opset, options, state["measure"])
        if isinstance(result, Choice):
            result = rewrite_node(
                g, node, material, result, state["unique"], opset, options, state["cursors"]
            )
    except PlanError as err:
        result = Refusal(str(err), "plan")
    if isinstance(result, NodeReport):
        result.name = label
        _finish(g, material, result, state["unique"])
        return result
    return NodeReport(
        name=label,
        graph="",
        status=SKIPPED,
        reason=result.reason,
        code=result.code,
        output=node.outputs[0].name if node.outputs else None,
    )


def convert_graph(
    graph: gs.Graph,
    options: Optional[ConvertOptions] = None,
    shapes: Optional[Dict[str, Sequence]] = None,
    sizes: Optional[Dict[str, Sequence]] = None,
    *,
    planner: Optional[Planner] = None,
    measure: Optional[Measurer] = None,
) -> ConversionReport:
    """Rewrite every ConvTranspose of ``graph`` (and its subgraphs/functions) in place.

    ``shapes`` optionally maps tensor names to shapes (ints, or strings/None for symbolic sizes),
    e.g. from ONNX shape inference; the graph's own tensor shapes are used otherwise. ``sizes``:
    the same at the user's input shapes (``ConvertOptions.input_shapes``), for speed decisions only.
    ``planner``: what plans each node (default ``options.planner``, else
    :func:`deconv2sub.plan.subpixel.make_plan`); ``measure``: the chooser of ``strategy="auto"``
    (:func:`deconv2sub.targets.autotune.measurer`; :func:`deconv2sub.api.convert_model` passes
    it). Returns the per-node report; nodes that cannot be rewritten stay as they are, with the
    refusal.
    """
    options = options or ConvertOptions()
    # The profile once, not per node (a TOML path would be read again for every ConvTranspose).
    options = replace(options, target=resolve_target(options.target))
    state = {
        "unique": _unique_namer(graph),
        "cache": {},
        "cursors": {},
        "measure": measure,
        "planner": planner or options.planner,
    }  # cache: folded weights, shared by their nodes
    report = ConversionReport(target=options.target.name)
    top_opset = _graph_opset(graph)
    for g, path in list(iter_graphs(graph)):
        opset = _graph_opset(g) if getattr(g, "opset", None) is not None else top_opset
        for node in list(g.nodes):
            if not is_default_op(node, "ConvTranspose"):
                continue
            entry = _node_entry(g, node, options, opset, state, shapes, sizes)
            entry.graph = path
            report.nodes.append(entry)
    return report


def _finish(
    graph: gs.Graph, material: NodeMaterial, entry: NodeReport, unique: Callable[[str], str]
) -> None:
    """Finish a rewritten node.

    After a rewrite: report notes, post-steps (QDQ), and drop weight producers nobody uses any more
    (a folded weight that is also consumed elsewhere or is a graph output stays).
    """
    entry.notes.extend(material.notes)
    if material.after is not None:
        base = (
            entry.new_nodes[0].rsplit("/", 1)[0]
            if entry.new_nodes
            else (entry.name or "convtranspose")
        )
        entry.new_nodes.extend(material.after(graph, unique, base))
    if material.sources:
        fold.drop_dead(graph, material.sources)
