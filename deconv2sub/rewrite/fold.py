"""Constant-subgraph folding for ConvTranspose weights and biases.

Some exporters do not store a ConvTranspose weight as an initializer but compute it in the graph
from constants only: ``Identity``/``Cast``/``Reshape``/``Transpose`` chains, arithmetic on an
initializer, ``ConstantOfShape`` + ``ScatterND``, ``Concat`` of slices, ... The rewrite needs the
values, so before giving up on such a weight we walk back its producer subgraph. If every leaf is a
constant (initializer or ``Constant`` node) and no graph input, outer-scope run-time value or
non-deterministic op is involved, the subgraph is evaluated node by node with ``onnx.reference``
(the ONNX reference implementation, so the numbers are the ones the spec defines) and the result
stands in for the weight.

Nothing in the graph is changed here: the caller uses the values for the rewrite; producer nodes
that end up unused afterwards can be dropped with :func:`drop_dead` (a folded tensor that is still
consumed elsewhere, or is a graph output, stays computed as before).

Bounds: at most :data:`MAX_NODES` nodes, and no intermediate larger than :data:`MAX_BYTES` (ops that
expand small inputs into big outputs are checked before they run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import onnx_graphsurgeon as gs

from .domains import DEFAULT_DOMAINS

__all__ = [
    "FoldResult",
    "FoldError",
    "fold_tensor",
    "drop_dead",
    "producer_nodes",
    "MAX_NODES",
    "MAX_BYTES",
]

#: Most nodes a folded producer subgraph may have.
MAX_NODES = 256
#: Largest intermediate (or result) tensor, in bytes.
MAX_BYTES = 2 << 30

_NONDETERMINISTIC = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",  # training mode would be random; folding it is never needed for a weight
}


class FoldError(Exception):
    """The tensor cannot be folded; ``str()`` is the one-line reason."""


@dataclass
class FoldResult:
    """A folded constant: its values and the producer nodes evaluated for it."""
    values: np.ndarray
    nodes: List[gs.Node] = field(default_factory=list)  # evaluated producers, topological order

    @property
    def computed_nodes(self) -> int:
        """Nodes that did real work (Constant nodes are leaves, not computation)."""
        return sum(1 for n in self.nodes if n.op != "Constant")

    def note(self, what: str = "weight") -> str:
        """A report note saying ``what`` was folded from how many nodes."""
        n = self.computed_nodes
        return f"{what} folded from {n} constant node{'s' if n != 1 else ''}"


def _is_default(node: gs.Node) -> bool:
    return node.domain in DEFAULT_DOMAINS


def _has_subgraph_or_ref(node: gs.Node) -> Optional[str]:
    for key, value in node.attrs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, gs.Graph):
                return f"{node.op} node '{node.name}' has a subgraph"
            if isinstance(v, gs.Node.AttributeRef):
                return f"{node.op} node '{node.name}' uses a function attribute ({key})"
    return None


def producer_nodes(tensor: gs.Tensor) -> List[gs.Node]:
    """The nodes that compute ``tensor`` from constants, in topological order.

    ``Constant`` nodes included.

    Raises :class:`FoldError` when the tensor depends on anything known only at run time, on a
    non-deterministic or custom op, or when the subgraph is larger than :data:`MAX_NODES`.
    """
    order: List[gs.Node] = []
    done: set = set()
    seen_tensors: set = set()
    # Iterative post-order walk (chains can be long; no recursion limit trouble).
    stack: List[Tuple[gs.Tensor, bool]] = [(tensor, False)]
    while stack:
        t, expanded = stack.pop()
        if isinstance(t, gs.Constant):
            continue
        if not t.inputs:
            if t.name == "":
                continue  # an omitted optional input
            raise FoldError(f"depends on '{t.name}', which is known only at run time")
        node = t.inputs[0]
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        if id(t) in seen_tensors:
            continue
        seen_tensors.add(id(t))
        if not _is_default(node):
            raise FoldError(f"depends on custom op {node.domain}.{node.op} (node '{node.name}')")
        if node.op in _NONDETERMINISTIC:
            raise FoldError(f"depends on non-deterministic op {node.op} (node '{node.name}')")
        why = _has_subgraph_or_ref(node)
        if why:
            raise FoldError(f"depends on {why}")
        if len(done) + len(stack) > 4 * MAX_NODES or len(seen_tensors) > 4 * MAX_NODES:
            raise FoldError(f"is computed by more than {MAX_NODES} nodes")
        stack.append((t, True))
        if node.op != "Constant":
            for inp in reversed(node.inputs):
                stack.append((inp, False))
    if sum(1 for n in order if n.op != "Constant") > MAX_NODES:
        raise FoldError(f"is computed by more than {MAX_NODES} nodes")
    return order


def _nbytes(shape, itemsize: int) -> int:
    return int(np.prod([max(int(d), 0) for d in shape], dtype=np.float64)) * itemsize


def _precheck(node: gs.Node, inputs: List[Optional[np.ndarray]]) -> None:
    """Refuse ops whose output would exceed MAX_BYTES before running them."""
    try:
        if node.op == "ConstantOfShape" and inputs and inputs[0] is not None:
            value = node.attrs.get("value")
            itemsize = (
                np.asarray(value.values).dtype.itemsize if isinstance(value, gs.Constant) else 4
            )
            size = _nbytes(inputs[0].reshape(-1), itemsize)
        elif (
            node.op == "Expand"
            and len(inputs) > 1
            and inputs[0] is not None
            and inputs[1] is not None
        ):
            shape = np.broadcast_shapes(
                tuple(inputs[0].shape), tuple(int(v) for v in inputs[1].reshape(-1))
            )
            size = _nbytes(shape, inputs[0].dtype.itemsize)
        elif (
            node.op == "Tile"
            and len(inputs) > 1
            and inputs[0] is not None
            and inputs[1] is not None
        ):
            size = inputs[0].nbytes * int(np.prod(inputs[1].astype(np.float64)))
        elif node.op == "Range" and len(inputs) == 3 and all(i is not None for i in inputs):
            start, limit, delta = (float(np.asarray(i).reshape(-1)[0]) for i in inputs)
            count = max(int(np.ceil((limit - start) / delta)), 0) if delta else 0
            size = count * inputs[0].dtype.itemsize
        else:
            return
    except (ValueError, TypeError, OverflowError):
        return  # let the op itself report the problem
    if size > MAX_BYTES:
        raise FoldError(
            f"{node.op} node '{node.name}' would produce {size / 1e9:.1f} GB"
            f" (limit {MAX_BYTES / 1e9:.1f} GB)"
        )


def _evaluate(node: gs.Node, inputs: List[Optional[np.ndarray]], opset: int) -> List[np.ndarray]:
    from onnx.reference import ReferenceEvaluator
    from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter

    proto = OnnxExporter.export_node(node)
    names = [f"in{i}" if t.name else "" for i, t in enumerate(node.inputs)]
    del proto.input[:]
    proto.input.extend(names)
    outs = [f"out{i}" for i in range(len(node.outputs))]
    del proto.output[:]
    proto.output.extend(outs)
    feeds = {name: value for name, value in zip(names, inputs) if name}
    evaluator = ReferenceEvaluator(proto, opsets={"": int(opset)})
    return list(evaluator.run(None, feeds))


def fold_tensor(
    tensor: gs.Tensor,
    constant_values: Callable[[gs.Tensor], Optional[np.ndarray]],
    opset: int,
) -> FoldResult:
    """Evaluate ``tensor`` from constants only; raises :class:`FoldError` with a reason otherwise.

    ``constant_values`` reads a constant leaf (initializer or Constant node output); ``opset`` is
    the default-domain opset of the graph the nodes live in.
    """
    nodes = producer_nodes(tensor)
    values: Dict[int, np.ndarray] = {}

    def value_of(t: gs.Tensor) -> Optional[np.ndarray]:
        if t.name == "" and not isinstance(t, gs.Constant):
            return None
        if id(t) in values:
            return values[id(t)]
        v = constant_values(t)
        if v is None:
            raise FoldError(f"depends on '{t.name}', which is not a constant")
        return v

    last_use: Dict[int, int] = {}
    for i, node in enumerate(nodes):
        for t in node.inputs:
            last_use[id(t)] = i

    for i, node in enumerate(nodes):
        if node.op == "Constant":
            v = constant_values(node.outputs[0])
            if v is None:
                raise FoldError(
                    f"Constant node '{node.name}' has a value kind that cannot be folded"
                )
            values[id(node.outputs[0])] = v
            continue
        inputs = [value_of(t) for t in node.inputs]
        _precheck(node, inputs)
        try:
            results = _evaluate(node, inputs, opset)
        except MemoryError:
            raise FoldError(f"evaluating {node.op} node '{node.name}' ran out of memory") from None
        # any evaluation failure is a reason to leave the node alone
        except Exception as exc:  # noqa: BLE001
            first = next(
                (ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__
            )
            raise FoldError(
                f"evaluating {node.op} node '{node.name}' failed: {first[:200]}"
            ) from None
        del inputs
        for out, res in zip(node.outputs, results):
            res = np.asarray(res)
            if res.nbytes > MAX_BYTES:
                raise FoldError(f"{node.op} node '{node.name}' produced {res.nbytes / 1e9:.1f} GB")
            values[id(out)] = res
        for t in node.inputs:  # free what no later node of the subgraph needs
            if last_use.get(id(t)) == i and t is not tensor:
                values.pop(id(t), None)
    if id(tensor) not in values:
        v = constant_values(tensor)
        if v is None:
            raise FoldError(f"'{tensor.name}' could not be evaluated")
        return FoldResult(v, nodes)
    return FoldResult(values[id(tensor)], nodes)


def _is_graph_output(tensor: gs.Tensor, graphs: List[gs.Graph]) -> bool:
    return any(any(o is tensor for o in g.outputs) for g in graphs)


def drop_dead(
    graph: gs.Graph, nodes: List[gs.Node], protected_graphs: Optional[List[gs.Graph]] = None
) -> int:
    """Remove those of ``nodes`` (in ``graph``) whose outputs nobody uses any more; return how many.

    A node stays when any output is consumed (in this graph, a subgraph or a function) or is an
    output of ``graph`` or of ``protected_graphs``. Goes backwards, so whole dead chains disappear.
    """
    graphs = [graph] + list(protected_graphs or [])
    removed = 0
    for node in reversed(nodes):
        if not any(n is node for n in graph.nodes):
            continue
        if any(t.outputs or _is_graph_output(t, graphs) for t in node.outputs):
            continue
        index = next(i for i, n in enumerate(graph.nodes) if n is node)
        del graph.nodes[index]
        node.inputs.clear()
        node.outputs.clear()
        removed += 1
    return removed
