"""Does an emitted graph stay within a target profile? The ops a profile forbids, as data.

Read off the graph itself (not from the emission's name), so that it holds for any emission,
including a new one: Gather / Gemm where the profile has no ``gather`` / ``gemm``, a
DepthToSpace in a mode the profile does not list or with a block above ``max_block``, a
Transpose or a constant-shape Reshape of more than ``max_rank`` axes (a Reshape back to the rank of
the model's own inputs or outputs aside: the last step of a 3-D shuffle, into the rank the original
computes in), phase Convs joined by a
Concat where ``phase_convs`` is off, run-time Shape arithmetic (Shape, and Gathers of its
values) where ``dynamic_shapes`` is off.
Used by ``strategy="auto"`` (:mod:`deconv2sub.targets.autotune`) to measure only what the
target can run.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import onnx
from onnx import numpy_helper

from .bugs import node_attr
from .profile import TargetProfile

__all__ = ["violations"]


def _constants(graph: onnx.GraphProto) -> Dict[str, onnx.TensorProto]:
    """Tensor name -> value of the graph's initializers and Constant nodes."""
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = a.t
    return values


def violations(profile: TargetProfile, model: onnx.ModelProto,
               original: Optional[onnx.ModelProto] = None) -> List[str]:
    """One line per op of ``model``'s main graph that ``profile`` does not allow (empty: fits).

    With ``original`` (the model before the rewrite), what the original already had is not
    counted: the rewrite answers for its own ops only (a U-Net's skip Concats are not phase Convs).
    """
    found = _violations(profile, model)
    if original is not None:
        for line in _violations(profile, original):
            if line in found:
                found.remove(line)
    return found


def _own_ranks(graph: onnx.GraphProto) -> set:
    """The ranks of the graph's inputs and outputs whose shapes are declared."""
    return {
        len(v.type.tensor_type.shape.dim)
        for v in list(graph.input) + list(graph.output)
        if v.type.tensor_type.HasField("shape")
    }


def _violations(profile: TargetProfile, model: onnx.ModelProto) -> List[str]:
    graph = model.graph
    consts = _constants(graph)
    own_ranks = _own_ranks(graph)
    producer = {o: n.op_type for n in graph.node for o in n.output}
    found: List[str] = []
    for node in graph.node:
        op = node.op_type
        from_shape = bool(node.input) and producer.get(node.input[0]) == "Shape"
        if op == "Gather" and not profile.gather and not from_shape:  # not shape arithmetic
            found.append(f"Gather {node.name or node.output[0]}: target {profile.name} has none")
        elif op == "Gemm" and not profile.gemm:
            found.append(f"Gemm {node.name or node.output[0]}: target {profile.name} has none")
        elif op == "DepthToSpace":
            mode = node_attr(node, "mode", b"DCR")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            block = int(node_attr(node, "blocksize", 0))
            if mode not in profile.depth_to_space:
                found.append(f"DepthToSpace {mode}: target {profile.name} takes "
                             f"{', '.join(profile.depth_to_space) or 'none'}")
            elif profile.max_block and block > profile.max_block:
                found.append(f"DepthToSpace block {block} > max_block {profile.max_block}")
        elif op == "Transpose":
            rank = len(node_attr(node, "perm", []) or [])
            if rank > profile.max_rank:
                found.append(f"Transpose of rank {rank} > max_rank {profile.max_rank}")
        elif op == "Reshape" and len(node.input) > 1 and node.input[1] in consts:
            rank = int(numpy_helper.to_array(consts[node.input[1]]).size)
            if rank > profile.max_rank and rank not in own_ranks:
                found.append(f"Reshape to rank {rank} > max_rank {profile.max_rank}")
        elif (op == "Concat" and not profile.phase_convs
              and sum(producer.get(i) == "Conv" for i in node.input) > 1):
            found.append(f"phase Convs joined by Concat: target {profile.name} has phase_convs off")
        elif op == "Shape" and not profile.dynamic_shapes:
            found.append(f"run-time Shape arithmetic: target {profile.name} has static shapes only")
    return found
