"""Verification: run the original and the rewritten model on the same inputs and compare every output.

The original graph, run by the runtime, is the oracle — never our own formula. When dims are symbolic
the models are compared at several input shapes (trials), so that a size accidentally baked into the
rewrite shows up. To keep memory low on big models, the original runs first (all trials), its outputs
are kept and its session freed, then the candidate runs.

On a mismatch the rewritten nodes responsible are localised: every rewrite keeps its ConvTranspose's
output tensor name, so both models can expose those tensors as extra outputs and be compared there;
the first diverging one in graph order is the culprit.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx

from .compare import ComparisonResult, compare_arrays, compare_outputs, format_comparison_table
from .errors import InputError, NoKernelError
from .inputs import TensorSpec, load_npz, make_feeds, model_input_specs, resolve_shapes
from .report import ConversionReport
from .runtimes import RuntimeInfo, create_runner

__all__ = ["VerifyOptions", "TrialResult", "VerificationResult", "verify_models", "expose_tensors", "plan_trials"]


@dataclass
class VerifyOptions:
    runtime: str = "onnxruntime"
    provider: str = "auto"
    require_cuda: bool = False
    optimize: bool = False  # ORT graph optimisations; off for comparison
    rtol: Optional[float] = None
    atol: Optional[float] = None
    seed: int = 0
    val_range: Optional[Tuple[float, float]] = None
    input_shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    inputs_npz: Optional[str] = None
    trials: Optional[int] = None  # None: 2 when some input dim is symbolic, else 1


@dataclass
class TrialResult:
    index: int
    shapes: Dict[str, Tuple[int, ...]]
    comparison: ComparisonResult

    def to_dict(self) -> dict:
        return {"trial": self.index, "input_shapes": {k: list(v) for k, v in self.shapes.items()},
                **self.comparison.to_dict()}


@dataclass
class Culprit:
    node: str
    tensor: str
    max_abs_err: float
    max_rel_err: float
    first: bool = False

    def to_dict(self) -> dict:
        return dict(node=self.node, tensor=self.tensor, max_abs_err=self.max_abs_err,
                    max_rel_err=self.max_rel_err, first=self.first)


@dataclass
class VerificationResult:
    runtime: Optional[RuntimeInfo] = None
    trials: List[TrialResult] = field(default_factory=list)
    culprits: List[Culprit] = field(default_factory=list)
    unavailable: Optional[str] = None  # why the runtime could not verify (e.g. no float64 kernel)
    candidate_error: Optional[str] = None  # the candidate failed to load or run
    inputs: List[Dict[str, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def verified(self) -> bool:
        return self.unavailable is None and (bool(self.trials) or self.candidate_error is not None)

    @property
    def passed(self) -> bool:
        return self.verified and self.candidate_error is None and all(t.comparison.passed for t in self.trials)

    def max_errors(self) -> Tuple[float, float]:
        """Worst (abs, rel) error over all trials and outputs."""
        abs_e = [o.max_abs_err for t in self.trials for o in t.comparison.outputs if o.max_abs_err is not None]
        rel_e = [o.max_rel_err for t in self.trials for o in t.comparison.outputs if o.max_rel_err is not None]
        return (max(abs_e, default=0.0), max(rel_e, default=0.0))

    def status(self) -> str:
        if not self.verified:
            return "NOT VERIFIED"
        return "PASSED" if self.passed else "FAILED"

    def to_dict(self) -> dict:
        abs_e, rel_e = self.max_errors()
        return {
            "status": self.status(),
            "runtime": None if self.runtime is None else self.runtime.describe(),
            "device": None if self.runtime is None else self.runtime.device,
            "unavailable": self.unavailable,
            "candidate_error": self.candidate_error,
            "max_abs_err": abs_e,
            "max_rel_err": rel_e,
            "trials": [t.to_dict() for t in self.trials],
            "culprits": [c.to_dict() for c in self.culprits],
        }

    def format_text(self, width: int = 80) -> str:
        lines = []
        if self.runtime is not None:
            lines.append(f"Verification on {self.runtime.describe()}")
        if self.unavailable:
            lines.append(f"NOT VERIFIED: {self.unavailable}")
            return "\n".join(lines)
        if self.candidate_error:
            lines.append(f"FAILED: {self.candidate_error}")
            return "\n".join(lines)
        for t in self.trials:
            shapes = ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in t.shapes.items())
            lines.append(f"trial {t.index + 1}: {shapes}")
            lines.append(format_comparison_table(t.comparison, width))
        for c in self.culprits:
            tag = "first divergence" if c.first else "diverges"
            lines.append(f"  {tag}: node '{c.node}' (tensor '{c.tensor}'): max abs err {c.max_abs_err:.3g}")
        abs_e, rel_e = self.max_errors()
        lines.append(f"{self.status()}: max abs err {abs_e:.3g}, max rel err {rel_e:.3g}")
        return "\n".join(lines)


def plan_trials(specs: Sequence[TensorSpec], options: VerifyOptions) -> List[Dict[str, Tuple[int, ...]]]:
    """Input shapes per trial; duplicates (all dims fixed or given) are dropped."""
    symbolic = any(s.shape is None or any(not isinstance(d, int) for d in s.shape) for s in specs)
    count = options.trials if options.trials is not None else (2 if symbolic else 1)
    trials: List[Dict[str, Tuple[int, ...]]] = []
    for i in range(max(1, count)):
        shapes = resolve_shapes(specs, options.input_shapes, trial=i)
        if shapes not in trials:
            trials.append(shapes)
    return trials


def expose_tensors(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with main-graph tensors ``names`` added as graph outputs (types inferred)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    types: Dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
            types[vi.name] = vi.type.tensor_type.elem_type
    except Exception:
        pass
    produced = {o for n in out.graph.node for o in n.output}
    for name in names:
        if name in present or name not in produced:
            continue
        out.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name) or onnx.TensorProto.FLOAT, None))
    return out


def _run_all(model, feeds_list, options: VerifyOptions, what: str, output_names=None):
    runner = create_runner(model, runtime=options.runtime, provider=options.provider,
                           require_cuda=options.require_cuda, optimize=options.optimize, what=what)
    results = [runner.run(feeds, output_names) for feeds in feeds_list]
    info = runner.info
    del runner
    gc.collect()
    return results, info


def verify_models(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    options: Optional[VerifyOptions] = None,
    report: Optional[ConversionReport] = None,
    progress=None,
) -> VerificationResult:
    """Compare ``candidate`` with ``original`` on the runtime; localise rewritten nodes on a mismatch.

    A runtime that cannot run the original at all (e.g. ONNX Runtime CPU has no float64 ConvTranspose)
    gives a result with ``unavailable`` set rather than an error. Any other failure of the original is
    the user's problem (InputError); a failure of the candidate is a failed verification.
    """
    options = options or VerifyOptions()
    specs = model_input_specs(original)
    if options.inputs_npz:
        feeds_list = [load_npz(options.inputs_npz, specs)]
        shapes_list = [{k: tuple(v.shape) for k, v in feeds_list[0].items()}]
    else:
        shapes_list = plan_trials(specs, options)
        feeds_list = [make_feeds(specs, s, seed=options.seed + i, val_range=options.val_range)
                      for i, s in enumerate(shapes_list)]
    result = VerificationResult(inputs=feeds_list)
    if progress:
        progress("running the original model")
    try:
        ref, info = _run_all(original, feeds_list, options, "the original model")
    except NoKernelError as err:
        result.unavailable = str(err)
        return result
    result.runtime = info
    if progress:
        progress("running the rewritten model")
    try:
        cand, _ = _run_all(candidate, feeds_list, options, "the rewritten model")
    except InputError as err:  # the rewrite does not even run: that is a failed verification
        result.candidate_error = str(err)
        return result
    for i, (r, c) in enumerate(zip(ref, cand)):
        result.trials.append(TrialResult(i, shapes_list[i], compare_outputs(r, c, options.rtol, options.atol)))
    if not result.passed and report is not None and report.rewritten:
        failing = next(i for i, t in enumerate(result.trials) if not t.comparison.passed)
        result.culprits = localise(original, candidate, report, feeds_list[failing], options)
    return result


def localise(original, candidate, report: ConversionReport, feeds: Mapping[str, np.ndarray],
             options: VerifyOptions) -> List[Culprit]:
    """Compare the outputs of every rewritten (main-graph) node; the diverging ones, first one marked."""
    names = [n.output for n in report.rewritten if n.graph == "main" and n.output]
    if not names:
        return []
    try:
        (ref,), _ = _run_all(expose_tensors(original, names), [feeds], options, "the original model", names)
        (cand,), _ = _run_all(expose_tensors(candidate, names), [feeds], options, "the rewritten model", names)
    except InputError:
        return []
    by_tensor = {n.output: n.name for n in report.rewritten}
    order = {name: i for i, name in enumerate(o for n in original.graph.node for o in n.output)}
    culprits = []
    for name in sorted(names, key=lambda t: order.get(t, 1 << 30)):
        cmp = compare_arrays(name, ref[name], cand[name], options.rtol, options.atol)
        if not cmp.passed:
            culprits.append(Culprit(by_tensor[name], name, float(cmp.max_abs_err or np.inf),
                                    float(cmp.max_rel_err or np.inf)))
    if culprits:
        culprits[0].first = True
    return culprits
