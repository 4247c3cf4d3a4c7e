"""Localisation: where two models that differ start to differ.

Through intermediate tensors that both graphs produce under the same name (our rewrite keeps each
ConvTranspose's output name): both models expose them as extra outputs (:func:`expose_tensors`) and
are compared there, in the reference's topological order; the first diverging one and the nodes
producing it are reported. ``convert`` compares exactly the rewritten nodes' outputs
(:func:`localise`); ``validate`` every shared tensor (:func:`shared_tensors`), narrowing in rounds
when there are more than ``VerifyOptions.localise_limit`` (:func:`localise_shared`).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import onnx

from ..errors import InputError
from ..progress import ProgressFn, step
from ..report import ConversionReport
from .compare import OutputComparison
from .options import VerifyOptions
from .results import Culprit, Divergence, Localisation
from .running import compare_for_runtime, run_all

__all__ = ["expose_tensors", "localise", "localise_shared", "shared_tensors"]


def _tensor_types(model: onnx.ModelProto) -> Dict[str, int]:
    """Main-graph tensor name → ONNX element type, from shape inference where it works."""
    types: Dict[str, int] = {}
    g = model.graph
    try:
        g = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # > 2 GiB, custom ops, ...: what the model declares
        pass
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        if vi.type.WhichOneof("value") == "tensor_type" and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    return types


def expose_tensors(model: onnx.ModelProto, names: Sequence[str],
                   types: Optional[Mapping[str, int]] = None) -> onnx.ModelProto:
    """A copy of ``model`` with main-graph tensors ``names`` added as graph outputs.

    Element types come from ``types`` or shape inference; a tensor of unknown type is declared
    float.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    if types is None:
        types = _tensor_types(model)
    produced = {o for n in out.graph.node for o in n.output}
    for name in names:
        if name in present or name not in produced:
            continue
        present.add(name)
        elem = types.get(name) or onnx.TensorProto.FLOAT
        out.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return out


def _exposed_run(original, candidate, names, feeds, options: VerifyOptions, ref_types=None,
                 cand_types=None, progress=None):
    """Both models' values of tensors ``names`` at ``feeds``, exposed as extra outputs."""
    (ref,), _ = run_all(expose_tensors(original, names, ref_types), [feeds], options,
                        "the original model", names, progress)
    (cand,), _ = run_all(expose_tensors(candidate, names, cand_types), [feeds], options,
                         "the candidate model", names, progress)
    return ref, cand


def localise(original, candidate, report: ConversionReport, feeds: Mapping[str, np.ndarray],
             options: VerifyOptions) -> List[Culprit]:
    """Compare the outputs of every rewritten (main-graph) node; the diverging, first marked."""
    # Where each rewrite rejoins the original graph (past the consumers sunk above its shuffle): a
    # tensor both models compute.
    names = [n.rejoin or n.output for n in report.rewritten
             if n.graph == "main" and (n.rejoin or n.output)]
    if not names:
        return []
    try:
        ref, cand = _exposed_run(original, candidate, names, feeds, options)
    except InputError:
        return []
    by_tensor = {n.rejoin or n.output: n.name for n in report.rewritten}
    order = {name: i for i, name in enumerate(o for n in original.graph.node for o in n.output)}
    culprits = []
    for name in sorted(names, key=lambda t: order.get(t, 1 << 30)):
        cmp = _compare_one(name, ref[name], cand[name], options)
        if not cmp.passed:
            culprits.append(Culprit(by_tensor[name], name, float(cmp.max_abs_err or np.inf),
                                    float(cmp.max_rel_err or np.inf)))
    if culprits:
        culprits[0].first = True
    return culprits


def _compare_one(name: str, ref, cand, options: VerifyOptions) -> OutputComparison:
    return compare_for_runtime({name: ref}, {name: cand}, options).outputs[0]


def _producers(model: onnx.ModelProto) -> Dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output if o}


def shared_tensors(original: onnx.ModelProto, candidate: onnx.ModelProto,
                   ref_types: Optional[Mapping[str, int]] = None,
                   cand_types: Optional[Mapping[str, int]] = None) -> List[str]:
    """Tensors produced by a main-graph node of both models, with the same known element type.

    In the original's (topological) node order.
    """
    ref_types = _tensor_types(original) if ref_types is None else ref_types
    cand_types = _tensor_types(candidate) if cand_types is None else cand_types
    cand_produced = _producers(candidate)
    names, seen = [], set()
    for node in original.graph.node:
        for o in node.output:
            same_type = ref_types.get(o) and ref_types.get(o) == cand_types.get(o)
            if o and o not in seen and o in cand_produced and same_type:
                seen.add(o)
                names.append(o)
    return names


def _spread(indices: List[int], count: int) -> List[int]:
    """``count`` evenly spaced entries of ``indices``, the last one included."""
    if len(indices) <= count:
        return list(indices)
    n = len(indices)
    picks = sorted({indices[min(n - 1, (k + 1) * n // count - 1)] for k in range(count)})
    return picks


def localise_shared(original: onnx.ModelProto, candidate: onnx.ModelProto,
                    feeds: Mapping[str, np.ndarray], options: Optional[VerifyOptions] = None,
                    progress: Optional[ProgressFn] = None) -> Localisation:
    """Find the first tensor, in the original's order, that both models produce and that diverges.

    At most ``options.localise_limit`` tensors are exposed per round. With more shared tensors the
    first round samples them evenly; each further round searches only between the last matching
    sample and the first diverging one, until every tensor in that window was compared.
    """
    options = options or VerifyOptions()
    step(progress, "localising: finding shared tensors")
    ref_types, cand_types = _tensor_types(original), _tensor_types(candidate)
    shared = shared_tensors(original, candidate, ref_types, cand_types)
    loc = Localisation(shared=len(shared))
    if not shared:
        loc.note = "the two models share no intermediate tensor name"
        return loc
    ref_nodes, cand_nodes = _producers(original), _producers(candidate)
    limit = max(2, int(options.localise_limit))
    window = list(range(len(shared)))
    first_round = True
    while window:
        picks = _spread(window, limit)
        names = [shared[i] for i in picks]
        loc.rounds += 1
        try:
            ref, cand = _exposed_run(original, candidate, names, feeds, options, ref_types,
                                     cand_types, _round_progress(progress, loc.rounds))
        except InputError as err:
            loc.note = f"could not expose intermediate tensors: {err}"
            break
        loc.compared += len(picks)
        failing = []
        for i, name in zip(picks, names):
            cmp = _compare_one(name, ref[name], cand[name], options)
            if not cmp.passed:
                failing.append((i, cmp))
        del ref, cand
        if first_round:
            loc.diverging = len(failing)
            first_round = False
        if not failing:
            if loc.first is None:
                loc.note = ("no shared tensor diverges (the difference arises in tensors only one "
                            "model has)")
            loc.exact = len(picks) == len(window)
            break
        i, cmp = failing[0]
        name = shared[i]
        rn, cn = ref_nodes[name], cand_nodes[name]
        loc.first = Divergence(name, rn.name or f"<{rn.op_type} producing {name}>", rn.op_type,
                               cn.name or f"<{cn.op_type} producing {name}>", cn.op_type, cmp)
        if len(picks) == len(window):
            break  # every tensor before the divergence in this window matched
        before = [p for p in picks if p < i]
        low = before[-1] if before else window[0] - 1
        window = [w for w in window if low < w < i]
    if loc.note is not None and loc.first is not None and loc.note.startswith("could not"):
        loc.exact = False
    return loc


def _round_progress(progress: Optional[ProgressFn], rounds: int) -> ProgressFn:
    """``progress`` with each step prefixed by the localisation round."""
    return lambda text, *a: step(progress, f"localising (round {rounds}): {text}", *a)
