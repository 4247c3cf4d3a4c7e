"""Post-rewrite graph optimisation: sink the shuffle below per-channel and elementwise consumers.

After the rewrite a ConvTranspose output ``y`` is ``crop(shuffle(z))`` with ``z`` the low-resolution
Conv output. An elementwise op ``f`` commutes with any permutation and crop of its input, and a
per-channel op (BatchNormalization, PRelu, Add/Sub/Mul/Div with a per-channel constant) does too
once its parameters are repeated for every Conv output row (each row belongs to one output channel,
see :meth:`deconv2sub.plan.subpixel.SubPixelPlan.row_channels`):

    f(crop(shuffle(z))) == crop(shuffle(f'(z)))

So the op moves between the Conv and the shuffle, where runtimes fuse it into the Conv (ONNX
Runtime: Conv + BatchNormalization folding, Conv + activation fusion; OpenVINO likewise), instead of
running it as one more pass over the high-resolution tensor. Parameters are copied (repeated), never
computed: the moved op does the same arithmetic on the same values. Nothing moves when the tensor in
between has other consumers or is a graph output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import onnx_graphsurgeon as gs

from .domains import DEFAULT_DOMAINS
from .fold import drop_dead
from .operands import known_values

__all__ = ["SinkContext", "sink_consumers", "UNARY_OPS", "PER_CHANNEL_OPS"]

# Elementwise, one data input, no parameter tensors (attributes only).
UNARY_OPS = {
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softplus",
    "Softsign",
    "Gelu",
    "Mish",
    "ThresholdedRelu",
    "Abs",
    "Neg",
    "Erf",
}
PER_CHANNEL_OPS = {"BatchNormalization", "PRelu", "Add", "Sub", "Mul", "Div", "Clip"}


@dataclass
class SinkContext:
    """What the rewrite of one node produced.

    The Conv output ``z`` (before any shuffle), the final tensor ``y`` (after shuffle and crop), the
    shuffle/crop nodes, the Conv node, and the row → channel map of ``z``.
    """

    graph: gs.Graph
    conv: gs.Node
    z: gs.Variable
    y: gs.Variable
    chain: List[gs.Node]
    row_channels: np.ndarray
    rank: int  # spatial rank
    unique: Callable[[str], str]
    base: str
    # Per-phase emission: the Conv outputs concatenated into z, one per phase, each with the M
    # output channels in their original order. A moved op is then cloned onto every branch (same
    # parameters), right after its Conv, where the runtime fuses it.
    branches: Optional[List[gs.Variable]] = None
    branch_rows: Optional[np.ndarray] = None  # row -> output channel of every branch (all alike)
    start: int = 0  # where the rewritten nodes begin in graph.nodes (a search hint)
    # ``z`` is a Gemm output ``[rows, L]`` (batch 1, spatial flattened) instead of
    # ``[N, rows, Q...]``: per-channel operands become ``[rows, 1]``; BatchNormalization cannot move
    # (it reads axis 1).
    matrix: bool = False


def _per_channel(values: np.ndarray, rank: int, channels: int) -> Optional[np.ndarray]:
    """``values`` as a broadcast operand of an ``[N, M, spatial...]`` tensor, as ``[M]`` or ``[1]``.

    Only if it varies at most along the channel axis (None otherwise).
    """
    full = rank + 2
    if values.ndim > full:
        return None
    shape = (1,) * (full - values.ndim) + tuple(values.shape)
    if shape[0] != 1 or any(d != 1 for d in shape[2:]) or shape[1] not in (1, channels):
        return None
    return values.reshape(shape[1])


def _movable(node: gs.Node, y: gs.Variable, ctx: SinkContext) -> Optional[List]:
    """New input list of ``node`` operating on the Conv output rows instead of ``y``.

    None: it cannot move.
    """
    if node.domain not in DEFAULT_DOMAINS or len(node.outputs) != 1:
        return None
    rows = ctx.row_channels
    channels = int(rows.max()) + 1 if rows.size else 0
    op = node.op
    if op in UNARY_OPS:
        return [None] if len(node.inputs) == 1 and node.inputs[0] is y else None
    if op == "Clip":
        if node.inputs[0] is not y:
            return None
        new = [None]
        for t in node.inputs[1:]:
            if t is None or t.name == "":
                new.append(t)
                continue
            v = known_values(t)
            if v is None or v.size != 1:
                return None
            new.append(
                t
                if isinstance(t, gs.Constant)
                else gs.Constant(ctx.unique(f"{ctx.base}_{op}_bound"), v)
            )
        return new
    if op == "BatchNormalization":
        if (
            ctx.matrix
            or node.inputs[0] is not y
            or len(node.inputs) != 5
            or int(node.attrs.get("training_mode", 0))
        ):
            return None
        params = [known_values(t) for t in node.inputs[1:]]
        if any(p is None or p.ndim != 1 or p.shape[0] != channels for p in params):
            return None
        return [None] + [
            gs.Constant(
                ctx.unique(f"{ctx.base}_{node.name or op}_{i}"), np.ascontiguousarray(p[rows])
            )
            for i, p in enumerate(params)
        ]
    if op == "PRelu":
        if node.inputs[0] is not y or len(node.inputs) != 2:
            return None
        slope = known_values(node.inputs[1])
        if slope is None:
            return None
        pc = _per_channel(slope, ctx.rank, channels)
        if pc is None:
            return None
        return [None, _row_operand(pc, rows, ctx, "slope", slope.dtype)]
    if op in ("Add", "Sub", "Mul", "Div"):
        if len(node.inputs) != 2 or (node.inputs[0] is y) == (node.inputs[1] is y):
            return None
        i_y = 0 if node.inputs[0] is y else 1
        other = node.inputs[1 - i_y]
        values = known_values(other)
        if values is None:
            return None
        pc = _per_channel(values, ctx.rank, channels)
        if pc is None:
            return None
        new = [None, None]
        new[1 - i_y] = _row_operand(pc, rows, ctx, op.lower(), values.dtype, full=True)
        return new
    return None


def _row_operand(
    pc: np.ndarray, rows: np.ndarray, ctx: SinkContext, what: str, dtype, full: bool = False
) -> gs.Constant:
    """A per-channel operand ([M] or [1]) repeated per Conv output row.

    Shaped to broadcast over ``[N, rows, Q...]`` (``full``: rank n+2, else ``[rows, 1...]`` as
    PRelu's slope).
    """
    values = pc if pc.shape[0] == 1 else pc[rows]
    shape = ((1,) if full else ()) + (values.shape[0],) + (1,) * ctx.rank
    if ctx.matrix:
        shape = (values.shape[0], 1)
    return gs.Constant(
        ctx.unique(f"{ctx.base}_{what}"),
        np.ascontiguousarray(values.reshape(shape)).astype(dtype, copy=False),
    )


def sink_consumers(ctx: SinkContext) -> List[str]:
    """Move movable consumers of ``ctx.y`` above the shuffle, one after the other.

    Returns ``["<op> <name>", ...]`` of the moved nodes. ``ctx`` is updated (``z``/``y`` are the new
    ends).
    """
    moved: List[str] = []
    graph = ctx.graph
    outputs = graph.outputs
    while True:
        y = ctx.y
        if len(y.outputs) != 1 or any(o is y for o in outputs):
            break
        node = y.outputs[0]
        if any(o is y for o in node.outputs):  # self loop: impossible, be safe
            break
        new_inputs = _movable(node, y, ctx)
        if new_inputs is None:
            break
        t = node.outputs[0]
        if ctx.branches:
            _sink_into_branches(ctx, node, y, t)
            moved.append(f"{node.op} {node.name}".rstrip() + f" (per phase, x{len(ctx.branches)})")
            continue
        z = ctx.z
        z_new = gs.Variable(ctx.unique(f"{ctx.base}_{node.op.lower()}_rows"), dtype=z.dtype)
        # Everything that read z (the shuffle chain, a Shape node) reads z_new: same shape, new
        # values.
        for consumer in list(z.outputs):
            for i, inp in enumerate(consumer.inputs):
                if inp is z:
                    consumer.inputs[i] = z_new
        inputs = [z if v is None else v for v in new_inputs]
        dropped = _constant_producers(node)
        node.inputs.clear()
        node.inputs.extend(inputs)
        drop_dead(graph, dropped)
        node.outputs.clear()
        node.outputs.append(z_new)
        # The chain's last node now produces t (y drops out of the graph).
        last = y.inputs[0]
        outs = [t if o is y else o for o in last.outputs]
        last.outputs.clear()
        last.outputs.extend(outs)
        # Keep the node list topologically sorted: node goes right after the Conv (or the previous
        # one). (Identity comparisons only: gs.Node.__eq__ compares whole nodes, list.remove would
        # be O(n) of those.)
        nodes = graph.nodes
        del nodes[_index(nodes, node, ctx.start)]
        index = _index(nodes, z.inputs[0], ctx.start)
        nodes.insert(index + 1, node)
        ctx.z = z_new
        ctx.y = t
        moved.append(f"{node.op} {node.name}".rstrip())
    return moved


def _constant_producers(node: gs.Node) -> List[gs.Node]:
    """``Constant`` nodes feeding ``node``.

    The moved node reads copies of their values, so they may die.
    """
    return [t.inputs[0] for t in node.inputs
            if isinstance(t, gs.Variable) and len(t.inputs) == 1 and t.inputs[0].op == "Constant"]


def _index(nodes, node, start: int = 0) -> int:
    """Position of ``node`` (by identity), searched from ``start`` first.

    The nodes the pass touches sit right after the rewritten node, so the search stays short in big
    graphs.
    """
    for i in range(max(0, min(start, len(nodes))), len(nodes)):
        if nodes[i] is node:
            return i
    return next(i for i, n in enumerate(nodes) if n is node)


def _sink_into_branches(ctx: SinkContext, node: gs.Node, y: gs.Variable, t: gs.Variable) -> None:
    """Clone ``node`` onto every per-phase branch (after its Conv).

    The shuffle's last node produces ``t``.
    """
    branch_ctx = SinkContext(
        ctx.graph,
        ctx.conv,
        ctx.z,
        y,
        ctx.chain,
        ctx.branch_rows,
        ctx.rank,
        ctx.unique,
        ctx.base,
        start=ctx.start,
    )
    # parameters for M rows in the original order: shared
    new_inputs = _movable(node, y, branch_ctx)
    concat = ctx.z.inputs[0]
    nodes = ctx.graph.nodes
    del nodes[_index(nodes, node, ctx.start)]
    dropped = _constant_producers(node)
    node.inputs.clear()
    node.outputs.clear()
    drop_dead(ctx.graph, dropped)
    for i, zb in enumerate(list(ctx.branches)):
        out = gs.Variable(ctx.unique(f"{ctx.base}_{node.op.lower()}_p{i}"), dtype=zb.dtype)
        clone = gs.Node(node.op, ctx.unique(f"{node.name or node.op}_p{i}"), dict(node.attrs),
                        [zb if v is None else v for v in new_inputs], [out], domain=node.domain)
        concat.inputs[_index(concat.inputs, zb)] = out
        nodes.insert(_index(nodes, zb.inputs[0], ctx.start) + 1, clone)
        ctx.branches[i] = out
    last = y.inputs[0]
    outs = [t if o is y else o for o in last.outputs]
    last.outputs.clear()
    last.outputs.extend(outs)
    ctx.y = t
