"""Which known toolchain bugs (:class:`deconv2sub.targets.KnownBug`) a converted model would hit.

``convert --toolchain ncnn`` (or :func:`find_hits`) scans the converted graph, subgraphs included,
for the operators of the toolchain's known bugs and reports each hit as data: the node, the bug, why
it matches. A hit is a warning, not a refusal: the model is exact; the named toolchain may
mistranslate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence

if TYPE_CHECKING:  # onnx is imported where a model is scanned: the CLI's option parsing stays light
    import onnx

from .profile import KnownBug


@dataclass(frozen=True)
class BugHit:
    """A known toolchain bug that one node of the output hits."""
    toolchain: str
    node: str
    op: str
    note: str
    reference: str
    detail: str = ""

    def line(self) -> str:
        """``warning: ncnn: node 'x/subpixel_shuffle' (DepthToSpace DCR): <note> [<reference>]``."""
        what = f"{self.op}{' ' + self.detail if self.detail else ''}"
        ref = f" [{self.reference}]" if self.reference else ""
        return f"{self.toolchain}: node '{self.node}' ({what}): {self.note}{ref}"

    def to_dict(self) -> dict:
        """Every field as a JSON-ready dict."""
        return dict(self.__dict__)


def _nodes(graph: "onnx.GraphProto") -> Iterator["onnx.NodeProto"]:
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)


def _shapes(model: "onnx.ModelProto") -> Dict[str, List[Optional[int]]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except (
        Exception
    ):  # shape inference is a nicety here: without it, rank/channel conditions stay unknown
        inferred = model
    out: Dict[str, List[Optional[int]]] = {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return out


def node_attr(node: "onnx.NodeProto", name: str, default=None):
    """The value of ``node``'s attribute ``name``, or ``default`` when it has none."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


_ARITH = ("Mul", "Add", "Sub", "Div")


def conv_kernel2_wide(kernel: Sequence[int], channels: Optional[int],
                      padded: Sequence[Optional[int]]) -> bool:
    """Whether a 2-D Conv is the one of MNN's inexact-2x2 bug (condition ``conv_kernel2_wide``).

    A 2x2 kernel, 32 or more input channels, and a padded input of 32 or more on some axis (an
    unknown size counts as large). MNN 3.6.1 picks an inexact kernel (errors ~1e-2) for some of
    these shapes and not others (a sweep of 32-128 input channels, 16-64 sizes and three paddings
    found every bad case inside this region and none outside it): the region is the safe side.
    """
    if list(kernel) != [2, 2] or channels is None or channels < 32:
        return False
    return not all(v is not None and v < 32 for v in padded)


def _matches(bug: KnownBug, node: "onnx.NodeProto", shapes, opset: int, consumers=None,
             producers=None) -> Optional[str]:
    """Why ``node`` hits ``bug`` (a short detail), or None.

    long: one branch per bug condition, each a few lines reading the node's neighbourhood; split
    per condition when a table of condition -> matcher functions pays for itself.
    """
    if node.op_type != bug.op:
        return None
    consumers = consumers or {}
    detail = []
    if bug.condition == "slice_of_shape_into_arith":
        source = (producers or {}).get(node.input[0]) if node.input else None
        arith = [c.op_type for c in consumers.get(node.output[0], ()) if c.op_type in _ARITH]
        if source is None or source.op_type != "Shape" or not arith:
            return None
        detail.append(f"Slice of Shape into {arith[0]}")
    if bug.op == "DepthToSpace":
        mode = node_attr(node, "mode", b"DCR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if opset < 11:
            mode = "DCR"
        if bug.mode is not None and mode != bug.mode:
            return None
        detail.append(mode)
        if bug.condition == "d2s_channels_ne_block":
            b = int(node_attr(node, "blocksize", 0))
            c = (shapes.get(node.input[0]) or [None, None])[1]
            if c is not None and c // (b * b) == b:
                return None
            detail.append(f"C/b^2 = {'?' if c is None else c // (b * b)}, b = {b}")
    if bug.condition == "d2s_after_3d_reshape":
        # Reshape (of a rank-5 tensor) -> Transpose -> Reshape -> DepthToSpace: onnx2tf reads
        # the rank-4 input as NHWC and fails to convert (depth_to_space_3d's shuffle)
        name = node.input[0] if node.input else None
        for op in ("Reshape", "Transpose", "Reshape"):
            source = (producers or {}).get(name)
            if source is None or source.op_type != op:
                return None
            name = source.input[0] if source.input else None
        if len(shapes.get(name) or []) != 5:
            return None
        detail.append("after a rank-4 Reshape/Transpose/Reshape of a rank-5 tensor")
    if bug.condition == "concat_after_ambiguous_reshape":
        ambiguous = []
        for name in node.input:
            source = (producers or {}).get(name)
            y = shapes.get(name)
            if (source is not None and source.op_type in ("Reshape", "Transpose") and y
                    and len(y) >= 4 and None not in y and y[1] in y[2:]):
                ambiguous.append(y)
        if not ambiguous:
            return None
        detail.append(f"input of shape {ambiguous[0]} (channels == a spatial size)")
    if bug.condition == "reshape_first_dim_not_one":
        y = shapes.get(node.output[0]) if node.output else None
        if not y or y[0] is None or y[0] == 1:
            return None
        detail.append(f"result of shape {y} (first dim {y[0]})")
    if bug.condition == "conv_kernel2_wide":
        kernel = list(node_attr(node, "kernel_shape", []) or [])
        x = shapes.get(node.input[0]) or []
        if len(x) != 4:
            return None
        pads = list(node_attr(node, "pads", [0, 0, 0, 0]) or [0, 0, 0, 0])
        padded = [None if v is None else v + pads[i] + pads[i + 2] for i, v in enumerate(x[2:])]
        if not conv_kernel2_wide(kernel, x[1], padded):
            return None
        detail.append(f"k2x2, {x[1]} input channels, padded input {padded[0]}x{padded[1]}")
    if bug.condition == "square_before_conv":
        y = shapes.get(node.output[0]) if node.output else None
        square = y is not None and None not in y and (
            (len(y) == 4 and y[1] == y[2] == y[3]) or (len(y) == 3 and y[1] == y[2]))
        padded = any(
            c.op_type == "Conv" and any(node_attr(c, "pads", []) or [])
            for c in consumers.get(node.output[0], ())
        )
        if not (square and padded):
            return None
        detail.append(f"shape {y} into a padded Conv")
    if bug.condition == "conv3d_into_rank6_shuffle":
        # Conv (5-D input) -> Reshape -> Transpose of rank >= 6 -> Reshape: RKNN's builder fuses
        # the chain into the Conv's channel order and permutes the result (measured:
        # rknn-toolkit2 2.5.0, wrong at 2x2x2 spatial, right at 3^3, 4^3, 8^3: no warning when no
        # spatial dim is 2)
        x = shapes.get(node.input[0]) or []
        if len(x) == 5 and all(d is not None and d != 2 for d in x[2:]):
            return None
        chains = [(r, t, m)
                  for r in consumers.get(node.output[0], ()) if r.op_type == "Reshape"
                  for t in consumers.get(r.output[0], ()) if t.op_type == "Transpose"
                  and len(node_attr(t, "perm", []) or []) >= 6
                  for m in consumers.get(t.output[0], ()) if m.op_type == "Reshape"]
        if len(x) != 5 or not chains:
            return None
        detail.append(f"3-D Conv into Transpose '{chains[0][1].name}' of rank "
                      f"{len(node_attr(chains[0][1], 'perm'))} between Reshapes")
    if bug.min_rank:
        rank = None
        if node.op_type == "Transpose" and node_attr(node, "perm") is not None:
            rank = len(node_attr(node, "perm"))
        elif node.input and shapes.get(node.input[0]) is not None:
            rank = len(shapes[node.input[0]])
        if rank is None or rank < bug.min_rank:
            return None
        detail.append(f"rank {rank}")
    if bug.axis is not None and int(node_attr(node, "axis", 0)) != bug.axis:
        return None
    return ", ".join(detail)


def find_hits(
    model: onnx.ModelProto, toolchains: Sequence[str], bugs: Iterable[KnownBug]
) -> List[BugHit]:
    """The known bugs of ``toolchains`` that nodes of ``model`` hit (its own nodes as converted)."""
    wanted = [b for b in bugs if b.toolchain in set(toolchains)]
    if not wanted:
        return []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    shapes = _shapes(model)
    nodes = list(_nodes(model.graph))
    consumers: Dict[str, list] = {}
    producers: Dict[str, "onnx.NodeProto"] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    hits = []
    for node in nodes:
        for bug in wanted:
            detail = _matches(bug, node, shapes, opset, consumers, producers)
            if detail is not None:
                hits.append(
                    BugHit(
                        bug.toolchain,
                        node.name or node.output[0],
                        node.op_type,
                        bug.note,
                        bug.reference,
                        detail,
                    )
                )
    return hits


def toolchains_with_bugs(bugs: Iterable[KnownBug]) -> List[str]:
    """The toolchains named by ``bugs``, sorted, each once."""
    return sorted({b.toolchain for b in bugs})
