"""The graph pass: every ConvTranspose with a constant weight becomes Conv + shuffle (+ crop).

Works on an onnx-graphsurgeon ``Graph`` in place (subgraphs of If/Loop/Scan and model-local functions
included). For each node, :func:`check` either returns the material for the rewrite or a one-line reason
to leave the node alone (weight known only at run time, unsupported attributes, ...); :func:`rewrite`
applies the plan from :mod:`deconv2sub.plan.subpixel`.

Invariants the pass keeps:

* the ConvTranspose's output tensor keeps its name and identity, so consumers and graph outputs are
  untouched; new nodes/tensors get unique names derived from the node's name;
* the original weight/bias tensors are not modified (a weight shared with other nodes stays valid);
  unused ones simply drop out on export;
* no size that the original left symbolic is baked in (see :mod:`deconv2sub.rewrite.shuffle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import onnx_graphsurgeon as gs

from . import fold, qdq
from ..plan.blocks import d2s_cascade_rows
from ..plan.subpixel import ConvTransposeAttrs, PlanError, SubPixelPlan, layout_row_channels, make_plan
from ..report import REWRITTEN, SKIPPED, ConversionReport, NodeReport
from ..targets import chooser as _strategy
from ..targets import resolve as resolve_target
from .operands import _NoSource, _constant_values
from .options import ConvertOptions
from .sinking import SinkContext, sink_consumers
from .shuffle import (Emitter, cascade_plan, emit_cascade_shuffle, emit_crop, emit_d2s_cascade,
                      emit_gather_shuffle, emit_permuted_shuffle, emit_runtime_crop, emit_shuffle, gather_crop,
                      gather_shuffle_ok, output_labels, shuffle_kind, split_labels, two_stage_labels)

__all__ = ["ConvertOptions", "convert_graph", "iter_graphs"]

_FLOAT_DTYPES = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
try:  # onnx >= 1.15 reads bfloat16 tensors as ml_dtypes.bfloat16
    import ml_dtypes

    _FLOAT_DTYPES.add(np.dtype(ml_dtypes.bfloat16))
except ImportError:  # pragma: no cover
    pass


@dataclass
class _Material:
    weight: np.ndarray
    bias: Optional[np.ndarray]
    attrs: ConvTransposeAttrs
    in_spatial: Optional[List[Optional[int]]]
    batch: Optional[int] = None  # the input's batch size when it is known
    # Where the weight/bias came from (see check()): notes for the report, producer nodes that may be
    # dead after the rewrite, and for quantized (QDQ) weights the emission of their DequantizeLinear.
    notes: List[str] = field(default_factory=list)
    sources: List[gs.Node] = field(default_factory=list)
    dtype: Optional[np.dtype] = None  # element type of the Conv output when it is not plan.weight's
    emit_inputs: Optional[Callable] = None  # (emitter, plan) -> [weight tensor, bias tensor?]
    after: Optional[Callable] = None  # (graph, unique, base) -> names of nodes added after the rewrite
    consumers: Tuple[str, ...] = ()  # op types reading the node's output (the default rule looks for BN)
    # The input's sizes at the user's --input-shape (ConvertOptions.input_shapes): where
    # ``in_spatial`` / ``batch`` are known these equal them, else only speed decisions may use them
    # (nothing is baked from them).
    size_hint: Optional[List[Optional[int]]] = None
    batch_hint: Optional[int] = None

    def sizes(self) -> Tuple[Optional[int], Optional[List[Optional[int]]]]:
        """(batch, spatial sizes) to decide speed by: what the model fixes, else the size hint."""
        spatial = self.in_spatial
        if self.size_hint is not None and (spatial is None or None in spatial):
            declared = spatial or [None] * len(self.size_hint)
            spatial = [h if v is None else v for v, h in zip(declared, self.size_hint)]
        return (self.batch if self.batch is not None else self.batch_hint), spatial


def iter_graphs(graph: gs.Graph, path: str = "main", functions: bool = True) -> Iterator[Tuple[gs.Graph, str]]:
    """The graph, its functions and every nested subgraph (If/Loop/Scan bodies), with a readable path.

    Every graph is yielded once: a gs ``Function`` also lists the model's functions (itself included),
    so functions are only taken from the top-level graph.
    """
    yield graph, path
    for node in graph.nodes:
        for key, value in node.attrs.items():
            subs = value if isinstance(value, (list, tuple)) else [value]
            for i, sub in enumerate(subs):
                if isinstance(sub, gs.Graph):
                    label = f"{path}/{node.name or node.op}.{key}" + (f"[{i}]" if len(subs) > 1 else "")
                    yield from iter_graphs(sub, label, functions=False)
    if functions and not isinstance(graph, gs.Function):
        for func in getattr(graph, "functions", None) or []:
            yield from iter_graphs(func, f"function:{func.domain}.{func.name}", functions=False)


# ---- weight sources (read by deconv2sub.rewrite.operands) ---------------------------------------------------
def _describe_source(tensor, graph: Optional[gs.Graph] = None) -> str:
    if isinstance(tensor, gs.Variable) and not tensor.inputs:
        if isinstance(graph, gs.Function) and any(t is tensor for t in graph.inputs):
            return f"'{tensor.name}' is an input of function '{graph.name}' (known only per call)"
        return f"'{tensor.name}' is a graph input (known only at run time)"
    if isinstance(tensor, gs.Variable) and tensor.inputs:
        return f"'{tensor.name}' is computed at run time by {tensor.inputs[0].op} node '{tensor.inputs[0].name}'"
    return f"'{tensor.name}' is not a constant"


def _source_values(tensor, graph, opset: int, cache: Optional[dict]) -> Tuple[np.ndarray, List[gs.Node], Optional[str]]:
    """(values, producer nodes, fold note) of a weight/bias known before run time, else raise _NoSource.

    An initializer or Constant node is read directly; a tensor computed from constants only is folded
    (see :mod:`deconv2sub.rewrite.fold`), once per tensor per pass when ``cache`` is given.
    """
    values = _constant_values(tensor)
    if values is not None:
        producers = list(tensor.inputs) if isinstance(tensor, gs.Variable) else []
        return values, producers, None
    if isinstance(tensor, gs.Variable) and not tensor.inputs:
        raise _NoSource(_describe_source(tensor, graph))
    key = id(tensor)
    if cache is not None and key in cache:
        _, result = cache[key]
    else:
        try:
            result = fold.fold_tensor(tensor, _constant_values, opset)
        except fold.FoldError as err:
            result = err
        except _NoSource as err:
            result = fold.FoldError(str(err))
        if cache is not None:
            cache[key] = (tensor, result)  # the tensor is kept alive so that its id stays unique
    if isinstance(result, fold.FoldError):
        producer = tensor.inputs[0]
        raise _NoSource(f"'{tensor.name}' is computed at run time by {producer.op} node '{producer.name}' "
                        f"and cannot be folded: it {result}")
    return result.values, list(result.nodes), result.note()


def _quant_values(graph, opset, cache):
    def values_of(tensor):
        try:
            values, producers, _ = _source_values(tensor, graph, opset, cache)
        except _NoSource as err:
            raise qdq.QdqError(f"quantized tensor {err}") from None
        return values, producers

    return values_of


def _ints(attrs: dict, key: str) -> Optional[List[int]]:
    value = attrs.get(key)
    return None if value is None else [int(v) for v in value]


def check(
    node: gs.Node,
    shapes: Optional[Dict[str, Sequence]] = None,
    *,
    graph: Optional[gs.Graph] = None,
    opset: int = 13,
    cache: Optional[dict] = None,
    sizes: Optional[Dict[str, Sequence]] = None,
) -> Tuple[Optional[_Material], Optional[str]]:
    """Return (material, None) when the node can be rewritten, else (None, reason).

    ``sizes``: tensor shapes at the user's input shapes (``ConvertOptions.input_shapes``), kept
    apart from ``shapes`` as the material's size hint (see ``_Material.size_hint``).

    Weight and bias may be initializers, Constant node outputs, tensors computed from constants only
    (folded first), or DequantizeLinear of such constants (quantized QDQ weights: rewritten quantized).
    ``graph`` is the graph holding ``node``, ``opset`` its default-domain opset (for folding).
    """
    if len(node.inputs) < 2 or node.inputs[1] is None or node.inputs[1].name == "":
        return None, "ConvTranspose has no weight input"
    if not node.outputs:
        return None, "ConvTranspose has no output"
    for key, value in node.attrs.items():
        if isinstance(value, gs.Node.AttributeRef):
            return None, f"attribute '{key}' refers to a function attribute (known only per call)"
    x, w = node.inputs[0], node.inputs[1]
    group_attr = int(node.attrs.get("group", 1) or 1)
    notes: List[str] = []
    sources: List[gs.Node] = []
    quant_w = quant_b = None
    try:
        producer = w.inputs[0] if isinstance(w, gs.Variable) and len(w.inputs) == 1 else None
        if qdq.is_dequantize(producer):
            quant_w = qdq.read_dequantize(producer, _quant_values(graph, opset, cache), qdq._WEIGHT_TYPES, "weight")
            qdq.check_weight(quant_w, group_attr)
            weight = quant_w.values
            sources += quant_w.sources
            notes.append(f"quantized weight ({quant_w.describe()})")
        else:
            weight, producers, note = _source_values(w, graph, opset, cache)
            sources += producers
            notes += [note] if note else []
    except _NoSource as err:
        return None, f"weight {err}"
    except qdq.QdqError as err:
        return None, str(err)
    if quant_w is None and weight.dtype not in _FLOAT_DTYPES:
        return None, f"weight dtype {weight.dtype} is not supported (float16/bfloat16/float32/float64)"
    if quant_w is None and not np.isfinite(weight).all():
        # The Conv multiplies its zero taps and zero padding too: 0 * inf = NaN would appear in cells
        # that the ConvTranspose computes without touching the infinite tap.
        return None, "weight contains inf or NaN (the sub-pixel Conv would spread NaN into other cells)"
    bias = None
    if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name != "":
        b = node.inputs[2]
        try:
            producer = b.inputs[0] if isinstance(b, gs.Variable) and len(b.inputs) == 1 else None
            if qdq.is_dequantize(producer):
                quant_b = qdq.read_dequantize(producer, _quant_values(graph, opset, cache), qdq._BIAS_TYPES, "bias")
                if quant_b.axis not in (None, 0) or quant_b.values.ndim != 1:
                    return None, "quantized bias must be 1-D, per-tensor or per-channel on axis 0"
                bias = quant_b.values
                sources += quant_b.sources
            else:
                bias, producers, note = _source_values(b, graph, opset, cache)
                sources += producers
                notes += [note.replace("weight", "bias", 1)] if note else []
        except _NoSource as err:
            return None, f"bias {err}"
        except qdq.QdqError as err:
            return None, str(err)
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
    material = _Material(weight, bias, attrs, in_spatial, notes=notes, sources=sources)
    if shape is not None and isinstance(shape[0], (int, np.integer)) and shape[0] > 0:
        material.batch = int(shape[0])
    _size_hint(material, (sizes or {}).get(x.name), n)
    if quant_w is not None or quant_b is not None:
        _quantized_emission(material, node, quant_w, quant_b)
    return material, None


def _size_hint(material: _Material, shape: Optional[Sequence], rank: int) -> None:
    """Set the material's size hint from ``shape`` (the input at the user's input shapes) when it
    has the node's rank."""
    known = [int(v) if isinstance(v, (int, np.integer)) and v > 0 else None for v in (shape or [])]
    if len(known) != rank + 2:
        return
    material.batch_hint = known[0]
    material.size_hint = known[2:]


def _quantized_emission(material: _Material, node: gs.Node, quant_w, quant_b) -> None:
    """Plan ``w_q - z_w`` (int32) and emit DequantizeLinear nodes for the Conv's weight/bias."""
    if quant_w is not None:
        material.weight = qdq.weight_for_plan(quant_w, material.attrs.group)
        material.dtype = quant_w.float_dtype
    elif quant_b is not None:
        material.dtype = material.weight.dtype
    y = node.outputs[0]

    def emit_inputs(em, plan):
        if quant_w is not None:
            inputs = [qdq.emit_weight(em, plan, quant_w)]
        else:
            inputs = [em.const("subpixel_weight", plan.weight)]
        if plan.bias is not None:
            if quant_b is not None:
                inputs.append(qdq.emit_bias(em, plan, quant_b))
            else:
                inputs.append(em.const("subpixel_bias", plan.bias))
        return inputs

    material.emit_inputs = emit_inputs
    if quant_w is not None:
        material.after = lambda graph, unique, base: qdq.requantize_conv_output(graph, y, unique, base)


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
    emission: Optional["_strategy.Emission"] = None,
) -> NodeReport:
    """Replace ``node`` in ``graph`` by Conv + shuffle (+ crop). Raises PlanError if it cannot be planned.

    ``emission`` (default: chosen from ``options.strategy``) says how: see :mod:`deconv2sub.targets.chooser`."""
    _check_runtime_crop(material, opset, options)
    if emission is None:
        material.consumers = tuple(c.op for c in node.outputs[0].outputs) if node.outputs else ()
        emission = _strategy.select(material, opset, options)
    plan: SubPixelPlan = _strategy.plan_for(material, emission.order, emission.fold_crop if options.fold_crop else False)
    per_phase = emission.strategy in ("per_phase", "per_phase_channels_last")
    if per_phase and (material.emit_inputs is not None or _strategy.split_for(plan) is None):
        why = "quantized weight" if material.emit_inputs is not None else "a phase without taps"
        fallback = "channels_last" if emission.strategy == "per_phase_channels_last" else "two_stage"
        emission = _strategy.fixed(fallback, group=material.attrs.group, rank=plan.rank, strides=plan.strides,
                                   opset=opset, reason=f"{emission.reason}; per_phase impossible ({why}): {fallback}")
        per_phase = False
        plan = _strategy.plan_for(material, emission.order, emission.fold_crop if options.fold_crop else False)
    use_gemm = emission.strategy == "pointwise_gemm" and _strategy.pointwise_gemm_ok(plan, material, opset)
    row_order = None  # Conv row r holds CRD row row_order[r] (a DepthToSpace cascade's channel order)
    if not plan.needs_shuffle:
        kind = "none"
    elif emission.strategy == "depth_to_space" and emission.blocks:
        if len(emission.blocks) > 1 or plan.order != ("DCR" if emission.modes[0] == "DCR" else "CRD"):
            row_order = d2s_cascade_rows(plan, emission.blocks, emission.modes)
            if row_order is None:
                raise PlanError("the DepthToSpace cascade would split the groups of the grouped Conv")
            plan = replace(plan, weight=np.ascontiguousarray(plan.weight[row_order]),
                           bias=None if plan.bias is None else np.ascontiguousarray(plan.bias[row_order]))
        kind = f"DepthToSpace({emission.modes[0]})"
        if len(emission.blocks) > 1:
            kind += " cascade " + "x".join(str(b) for b in emission.blocks)
    elif emission.strategy == "low_rank_transpose":
        try:
            _, _, shape_ops = cascade_plan(plan, material.in_spatial, material.batch, emission.max_rank)
        except ValueError as err:
            raise PlanError(str(err)) from None
        if shape_ops and not getattr(resolve_target(options.target), "dynamic_shapes", True):
            raise PlanError("its Reshape/Transpose shuffle needs run-time shape arithmetic (two or more "
                            "symbolic sizes), which the target does not allow: give --input-shape")
        kind = f"Reshape/Transpose (rank <= {emission.max_rank})"
    elif emission.strategy == "depth_to_space":
        kind = shuffle_kind(plan, opset, options.shuffle)
        if kind == "Reshape/Transpose" and plan.order != "CRD":
            plan = make_plan(material.weight, material.bias, material.attrs, material.in_spatial, "CRD")
        if kind == "Reshape/Transpose" and opset < 5:
            raise PlanError(f"opset {opset} has no Reshape with a shape input (needs >= 5)")
    else:
        gather = _strategy.GATHER if gather_shuffle_ok(plan, material.in_spatial) else _strategy.TWO_STAGE
        split_gather = (_strategy.GATHER if per_phase
                        and gather_shuffle_ok(plan, material.in_spatial, _strategy.split_for(plan), material.batch)
                        else _strategy.TWO_STAGE)
        kind = {"two_stage": _strategy.TWO_STAGE, "per_phase": split_gather,
                "transpose_gather": gather, "pointwise_gemm": gather,
                "channels_last": _strategy.CHANNELS_LAST,
                "per_phase_channels_last": _strategy.CHANNELS_LAST}.get(emission.strategy, _strategy.TRANSPOSE)

    base = node.name or node.outputs[0].name
    em = Emitter(base, unique, opset)
    x = node.inputs[0]
    y = node.outputs[0]
    dtype = plan.weight.dtype if material.dtype is None else material.dtype
    crop_left = None  # the crop still to slice when the shuffle did part of it (Gather)
    if kind == _strategy.GATHER:
        crop_left = gather_crop(plan)
    needs_crop = plan.needs_crop if crop_left is None else (any(any(c) for c in crop_left)
                                                            or bool(plan.runtime_axes))
    stages = [kind != "none", needs_crop]
    conv_out = y if not any(stages) else em.var("subpixel_conv_out", dtype)
    rows_layout = None  # channel layout of conv_out when it is not plan.row_layout()
    split = None
    if per_phase:
        split = _strategy.split_for(plan)
        conv_node = _emit_phase_convs(em, plan, split, x, conv_out, dtype)
        rows_layout = split.rows
    elif use_gemm:
        rows, channels = int(plan.weight.shape[0]), int(plan.weight.shape[1])
        flat = em.var("subpixel_matrix", dtype)
        em.node("Reshape", "subpixel_flatten", [x, em.int64s("flatten_shape", [channels, -1])], [flat])
        inputs = [em.const("subpixel_weight", plan.weight.reshape(rows, channels)), flat]
        if plan.bias is not None:
            inputs.append(em.const("subpixel_bias", plan.bias.reshape(rows, 1)))
        conv_node = em.node("Gemm", "subpixel_gemm", inputs, [conv_out])
    else:
        if material.emit_inputs is not None:  # quantized weight/bias: DequantizeLinear nodes (see check())
            conv_inputs = [x, *material.emit_inputs(em, plan)]
        else:
            conv_inputs = [x, em.const("subpixel_weight", plan.weight)]
            if plan.bias is not None:
                conv_inputs.append(em.const("subpixel_bias", plan.bias))
        conv_node = em.node(
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
        shuffled = y if not needs_crop else em.var("subpixel_shuffled", dtype)
        if kind == _strategy.GATHER:
            emit_gather_shuffle(em, plan, current, shuffled, material.in_spatial, material.batch, rows_layout, split)
        elif emission.strategy == "depth_to_space" and emission.blocks:
            emit_d2s_cascade(em, current, shuffled, emission.blocks, emission.modes)
        elif emission.strategy == "low_rank_transpose":
            emit_cascade_shuffle(em, plan, current, shuffled, material.in_spatial, material.batch,
                                 emission.max_rank)
        elif emission.strategy == "depth_to_space":
            emit_shuffle(em, plan, kind, current, shuffled, material.in_spatial)
        else:
            stages = [output_labels(plan)]
            if emission.strategy in ("two_stage", "transpose_gather"):
                stages.insert(0, two_stage_labels(plan))
            elif split is not None and kind != _strategy.CHANNELS_LAST:
                stages = [split_labels(plan, True), split_labels(plan, False)]
            elif split is not None:
                stages = [split_labels(plan, False)]
            emit_permuted_shuffle(em, plan, stages, current, shuffled, material.in_spatial, material.batch,
                                  rows_layout, channels_last=kind == _strategy.CHANNELS_LAST)
        current = shuffled
    crop = None
    if needs_crop and plan.runtime_axes:
        crop = emit_runtime_crop(em, plan, x, current, y, crop_left)
    elif needs_crop:
        crop = emit_crop(em, plan, current, y, crop_left)

    # Splice: the new nodes take the old node's place, so the node list stays topologically sorted.
    # (The pass visits nodes in order: searching from the previous splice keeps a big graph linear.)
    nodes = graph.nodes
    hint = graph.__dict__.get("_deconv2sub_cursor", 0)
    index = next((i for i in range(min(hint, len(nodes)), len(nodes)) if nodes[i] is node), None)
    if index is None:
        index = next(i for i, n in enumerate(nodes) if n is node)
    node.inputs.clear()
    node.outputs.clear()
    graph.nodes[index : index + 1] = em.nodes
    graph.__dict__["_deconv2sub_cursor"] = index

    phase_info = None  # per-phase: (largest phase kernel, its pads) for the report
    if split is not None:
        biggest = max(split.convs, key=lambda c: int(np.prod(c.weight.shape[2:])))
        phase_info = (list(biggest.weight.shape[2:]), list(biggest.pads))
    sunk: List[str] = []
    rejoin = y.name
    if options.sink and conv_out is not y and material.after is None:
        channels = plan.row_channels() if rows_layout is None else layout_row_channels(rows_layout)
        if row_order is not None:
            channels = channels[row_order]
        ctx = SinkContext(graph, conv_node, conv_out, y, em.nodes[em.nodes.index(conv_node) + 1:], channels,
                          plan.rank, unique, base,
                          branches=list(conv_node.inputs) if split is not None else None,
                          branch_rows=None if split is None else layout_row_channels(split.conv_rows(plan.out_channels)),
                          start=index, matrix=use_gemm)
        sunk = sink_consumers(ctx)
        rejoin = ctx.y.name

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
        shuffle=kind,
        crop=crop,
        empty_phases=plan.empty_phases,
        new_nodes=[n.name for n in em.nodes],
        strategy=emission.strategy,
        strategy_reason=emission.reason + ("" if split is None else f"; {_phase_note(plan, split)}")
        + (f"; {_strategy.GEMM_NOTE}" if use_gemm else ""),
        sunk=sunk,
        rejoin=rejoin,
    )


MACS_WARN_RATIO = 1.25  # the report warns when a rewrite costs more multiply-accumulates than this


def _macs(material: _Material, plan: SubPixelPlan, split) -> tuple:
    """(MACs before, after, after / before) per sample: a ConvTranspose multiplies every weight with
    every input position; the Conv(s) every weight with every Conv output position (zero taps
    included: runtimes multiply them too). Sizes unknown: None, None and the per-position ratio."""
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
    odd = [f"kernel {a.kernel} not a multiple of stride {a.stride}" for a in plan.axes
           if a.stride > 1 and (a.dilation * (a.kernel - 1) + 1) % a.stride]
    if odd:
        return "zero taps (" + "; ".join(dict.fromkeys(odd)) + ")"
    if plan.empty_phases:
        return f"{plan.empty_phases} phase(s) without taps"
    return "the Conv's padding (output larger than the input by the kernel span)"


def _check_runtime_crop(material: _Material, opset: int, options: ConvertOptions) -> None:
    """Raise PlanError when the node needs a run-time crop (``output_shape`` with a symbolic input
    size: its pads depend on the run-time size) that the target or the opset cannot have."""
    if not _strategy.needs_runtime_crop(material):
        return
    what = ("output_shape with a symbolic input spatial size needs a run-time crop (its pads "
            "depend on the run-time size)")
    if not options.dynamic_shapes or not resolve_target(options.target).dynamic_shapes:
        raise PlanError(f"{what}, and the target does not allow dynamic shapes")
    if opset < 10:
        raise PlanError(f"{what}, which needs Slice with run-time starts (opset >= 10); the model "
                        f"has opset {opset}")


def _phase_note(plan: SubPixelPlan, split) -> str:
    kernels = ", ".join("x".join(map(str, c.weight.shape[2:])) for c in split.convs)
    phases_per_conv = plan.phases // len(split.convs)
    taps = sum(int(np.prod(c.weight.shape[2:])) for c in split.convs) * phases_per_conv
    shared = plan.phases * int(np.prod([(a.dilation * (a.kernel - 1)) // a.stride + 1 for a in plan.axes]))
    what = "per-phase Convs" if phases_per_conv == 1 else f"phase-group Convs ({phases_per_conv} phases each)"
    return f"{len(split.convs)} {what} ({kernels}), no begin crop: {taps} taps where one Conv would store {shared}"


def _emit_phase_convs(em: Emitter, plan: SubPixelPlan, split, x, out, dtype):
    """One Conv per phase group (only its own taps) + Concat into ``out``; returns the Concat node."""
    outs = []
    for i, pc in enumerate(split.convs):
        tag = "" if i == 0 else f"_p{i}"  # the first keeps the single-Conv names (subpixel_conv, ...)
        inputs = [x, em.const(f"subpixel_weight{tag}", pc.weight)]
        if pc.bias is not None:
            inputs.append(em.const(f"subpixel_bias{tag}", pc.bias))
        z = em.var(f"subpixel_phase{i}", dtype)
        em.node("Conv", f"subpixel_conv{tag}", inputs, [z], {
            "kernel_shape": list(pc.weight.shape[2:]),
            "strides": [1] * plan.rank,
            "dilations": pc.dilations,
            "pads": pc.pads,
            "group": plan.group,
        })
        outs.append(z)
    if len(outs) == 1:
        return em.node("Identity", "subpixel_phases", outs, [out])
    return em.node("Concat", "subpixel_phases", outs, [out], {"axis": 1})


def convert_graph(
    graph: gs.Graph,
    options: Optional[ConvertOptions] = None,
    shapes: Optional[Dict[str, Sequence]] = None,
    sizes: Optional[Dict[str, Sequence]] = None,
) -> ConversionReport:
    """Rewrite every ConvTranspose of ``graph`` (and its subgraphs/functions) in place.

    ``shapes`` optionally maps tensor names to shapes (ints, or strings/None for symbolic sizes), e.g.
    from ONNX shape inference; the graph's own tensor shapes are used otherwise. ``sizes``: the same
    at the user's input shapes (``ConvertOptions.input_shapes``), for speed decisions only. Returns
    the per-node report; nodes that cannot be rewritten stay as they are, with a reason.
    """
    options = options or ConvertOptions()
    unique = _unique_namer(graph)
    report = ConversionReport(target=resolve_target(options.target).name)
    top_opset = _graph_opset(graph)
    cache: dict = {}  # folded weights, shared by the nodes that use them
    for g, path in list(iter_graphs(graph)):
        opset = _graph_opset(g) if getattr(g, "opset", None) is not None else top_opset
        for node in list(g.nodes):
            if node.op != "ConvTranspose" or node.domain not in (None, "", "ai.onnx"):
                continue
            label = node.name or (node.outputs[0].name if node.outputs else "<unnamed>")
            material, reason = check(node, shapes, graph=g, opset=opset, cache=cache, sizes=sizes)
            if material is not None:
                try:
                    entry = rewrite(g, node, material, unique, opset, options)
                except PlanError as err:
                    reason = str(err)
                else:
                    entry.name = label
                    entry.graph = path
                    _finish(g, material, entry, unique)
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


def _finish(graph: gs.Graph, material: _Material, entry: NodeReport, unique: Callable[[str], str]) -> None:
    """After a rewrite: report notes, post-steps (QDQ), and drop weight producers nobody uses any more
    (a folded weight that is also consumed elsewhere or is a graph output stays)."""
    entry.notes.extend(material.notes)
    if material.after is not None:
        base = entry.new_nodes[0].rsplit("/", 1)[0] if entry.new_nodes else (entry.name or "convtranspose")
        entry.new_nodes.extend(material.after(graph, unique, base))
    if material.sources:
        fold.drop_dead(graph, material.sources)
