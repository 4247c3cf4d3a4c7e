"""Verification: run a reference and a candidate model on the same inputs and compare every output.

Two entry points share the machinery:

* :func:`verify_models` — ``convert``'s check of the rewrite against the original. The original
  graph, run by the runtime, is the oracle — never our own formula.
* :func:`validate_models` — ``validate``: any two models with compatible inputs (ours or not).

When dims are symbolic the models are compared at several input shapes (trials), so that a size
accidentally baked into a graph shows up. To keep memory low on big models, the reference runs first
(all trials), its outputs are kept and its session freed, then the candidate runs.

On a mismatch the divergence is localised through intermediate tensors that both graphs produce under
the same name (our rewrite keeps each ConvTranspose's output name): both models expose them as extra
outputs and are compared there, in the reference's topological order; the first diverging one and the
nodes producing it are reported. ``convert`` compares exactly the rewritten nodes' outputs
(:func:`localise`); ``validate`` every shared tensor, narrowing in rounds when there are more than
``VerifyOptions.localise_limit`` (:func:`localise_shared`).
"""

from __future__ import annotations

import gc
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from .compare import (CRITERION, ComparisonResult, OutputComparison, applied_tolerances,
                      compare_arrays, compare_outputs, criterion_lines, format_comparison_table,
                      tolerances_for)
from .errors import InputError, NoKernelError, OutputError, RuntimeUnavailableError
from .inputs import (TensorSpec, load_npz, make_feeds, model_input_specs, resolve_shapes, save_npz,
                     symbolic_dim_values, trial_shape_candidates)
from .progress import ProgressFn, step
from .report import ConversionReport
from .runtimes import TOOLCHAINS, RuntimeInfo, create_runner

__all__ = [
    "VerifyOptions",
    "TrialResult",
    "Culprit",
    "Divergence",
    "Localisation",
    "VerificationResult",
    "verify_models",
    "validate_models",
    "merge_input_specs",
    "make_trial_feeds",
    "shared_tensors",
    "localise",
    "localise_shared",
    "expose_tensors",
    "plan_trials",
    "save_repro_inputs",
    "save_repro_outputs",
    "load_for_comparison",
]


@dataclass
class VerifyOptions:
    """How two models are compared. ``runtime`` runs the candidate, ``reference_runtime`` the original
    (default: the same, except for deployment toolchains, where the original runs on ONNX Runtime: the
    question is whether the toolchain runs the rewrite as ONNX Runtime runs the original)."""

    runtime: str = "onnxruntime"
    reference_runtime: Optional[str] = None
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
    keep_outputs: bool = False  # keep both models' outputs in the result (to save them)
    localise_limit: int = 256  # most intermediate tensors exposed per localisation round


@dataclass
class TrialResult:
    index: int
    shapes: Dict[str, Tuple[int, ...]]
    comparison: ComparisonResult
    seed: Optional[int] = None  # None: the inputs came from a file

    def to_dict(self) -> dict:
        return {"trial": self.index, "input_shapes": {k: list(v) for k, v in self.shapes.items()},
                "seed": self.seed, **self.comparison.to_dict()}


@dataclass
class Culprit:
    """A rewritten node whose output diverges (``convert``)."""

    node: str
    tensor: str
    max_abs_err: float
    max_rel_err: float
    first: bool = False

    def to_dict(self) -> dict:
        return dict(node=self.node, tensor=self.tensor, max_abs_err=self.max_abs_err,
                    max_rel_err=self.max_rel_err, first=self.first)


@dataclass
class Divergence:
    """A tensor both models produce that differs beyond tolerance, and who produces it in each."""

    tensor: str
    original_node: str
    original_op: str
    candidate_node: str
    candidate_op: str
    comparison: OutputComparison

    def to_dict(self) -> dict:
        return {"tensor": self.tensor,
                "original_node": {"name": self.original_node, "op": self.original_op},
                "candidate_node": {"name": self.candidate_node, "op": self.candidate_op},
                **{k: v for k, v in self.comparison.to_dict().items() if k != "name"}}


@dataclass
class Localisation:
    """Where two models start to differ, found through the tensors they share by name."""

    shared: int = 0  # intermediate tensors both main graphs produce (same name and element type)
    compared: int = 0  # how many of them were compared (over all rounds)
    diverging: int = 0  # how many compared ones differ (first round: spread over the whole graph)
    rounds: int = 0
    first: Optional[Divergence] = None
    exact: bool = True  # every shared tensor before ``first`` was compared
    note: Optional[str] = None  # why localisation could not run or found nothing

    def to_dict(self) -> dict:
        return {"shared_tensors": self.shared, "compared": self.compared, "diverging": self.diverging,
                "rounds": self.rounds, "exact": self.exact, "note": self.note,
                "first_divergence": None if self.first is None else self.first.to_dict()}

    def format_text(self) -> List[str]:
        if self.first is None:
            return [f"localisation: {self.note or 'no shared tensor diverges'}"]
        d, c = self.first, self.first.comparison
        err = "-" if c.max_abs_err is None else f"{c.max_abs_err:.3g}"
        lines = [f"first divergence: tensor '{d.tensor}' (max abs err {err})" + (f" ({c.note})" if c.note else ""),
                 f"  produced in ORIGINAL by node '{d.original_node}' ({d.original_op})",
                 f"  produced in CANDIDATE by node '{d.candidate_node}' ({d.candidate_op})"]
        how = "" if self.exact else ", sampled: an earlier unsampled tensor may diverge too"
        lines.append(f"  {self.compared} of {self.shared} shared tensors compared in {self.rounds} round(s){how}")
        return lines


@dataclass
class VerificationResult:
    runtime: Optional[RuntimeInfo] = None
    trials: List[TrialResult] = field(default_factory=list)
    culprits: List[Culprit] = field(default_factory=list)
    unavailable: Optional[str] = None  # why the runtime could not verify (e.g. no float64 kernel)
    candidate_error: Optional[str] = None  # the candidate failed to load or run
    inputs: List[Dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    localisation: Optional[Localisation] = None
    candidate_runtime: Optional[RuntimeInfo] = None
    optimize: bool = False
    outputs_ref: List[Dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    outputs_cand: List[Dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    notes: List[str] = field(default_factory=list)  # e.g. a trial dropped: the original fails there

    @property
    def verified(self) -> bool:
        return self.unavailable is None and (bool(self.trials) or self.candidate_error is not None)

    @property
    def passed(self) -> bool:
        return self.verified and self.candidate_error is None and all(t.comparison.passed for t in self.trials)

    @property
    def repro_trial(self) -> int:
        """The trial worth reproducing: the first failing one, else the first."""
        return next((i for i, t in enumerate(self.trials) if not t.comparison.passed), 0)

    def max_errors(self) -> Tuple[float, float]:
        """Worst (abs, rel) error over all trials and outputs."""
        abs_e = [o.max_abs_err for t in self.trials for o in t.comparison.outputs if o.max_abs_err is not None]
        rel_e = [o.max_rel_err for t in self.trials for o in t.comparison.outputs if o.max_rel_err is not None]
        return (max(abs_e, default=0.0), max(rel_e, default=0.0))

    def criterion_lines(self) -> List[str]:
        """The element-wise pass test with the atol/rtol each compared dtype used (all trials)."""
        return criterion_lines(o for t in self.trials for o in t.comparison.outputs)

    def failing_outputs(self) -> List[str]:
        """Names of outputs that fail (or are unpaired) in some trial, in first-seen order."""
        names: List[str] = []
        for t in self.trials:
            c = t.comparison
            for n in [o.name for o in c.outputs if not o.passed] + c.unpaired_ref + c.unpaired_cand:
                if n not in names:
                    names.append(n)
        return names

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
            "graph_optimizations": self.optimize or (self.runtime is not None and self.runtime.runtime == "openvino"),
            "unavailable": self.unavailable,
            "candidate_error": self.candidate_error,
            "max_abs_err": abs_e,
            "max_rel_err": rel_e,
            "failing_outputs": self.failing_outputs(),
            "criterion": {"element_wise": CRITERION, "tolerances": applied_tolerances(
                o for t in self.trials for o in t.comparison.outputs)},
            "trials": [t.to_dict() for t in self.trials],
            "culprits": [c.to_dict() for c in self.culprits],
            "localisation": None if self.localisation is None else self.localisation.to_dict(),
            "notes": list(self.notes),
        }

    def format_text(self, width: int = 80, show_worst: bool = False, verdict: bool = True) -> str:
        """Human report; ``show_worst``: the worst element of passing outputs too; ``verdict``: end with
        the overall PASSED/FAILED line."""
        lines: List[str] = []

        def wrap(text: str) -> None:
            lines.extend(textwrap.wrap(text, width, subsequent_indent="    ", break_on_hyphens=False) or [""])

        if self.runtime is not None:
            opt = "on" if self.optimize else "off"
            if self.runtime.runtime == "openvino":
                opt = "on (OpenVINO always optimises)"
            wrap(f"Verification on {self.runtime.describe()}; graph optimisations {opt}")
            cand = self.candidate_runtime
            if cand is not None and cand.describe() != self.runtime.describe():
                wrap(f"  the candidate ran on {cand.describe()}")
        if self.unavailable:
            wrap(f"NOT VERIFIED: {self.unavailable}")
            return "\n".join(lines)
        if self.candidate_error:
            wrap(f"FAILED: {self.candidate_error}")
            return "\n".join(lines)
        for t in self.trials:
            shapes = ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in t.shapes.items())
            origin = " (from file)" if t.seed is None else f" (seed {t.seed})"
            wrap(f"trial {t.index + 1}: {shapes}{origin}")
            lines.append(format_comparison_table(t.comparison, width, show_worst=show_worst))
        for note in self.notes:
            wrap(f"note: {note}")
        for c in self.culprits:
            tag = "first divergence" if c.first else "diverges"
            wrap(f"  {tag}: node '{c.node}' (tensor '{c.tensor}'): max abs err {c.max_abs_err:.3g}")
        if self.localisation is not None:
            for line in self.localisation.format_text():
                wrap(line)
        if verdict:
            abs_e, rel_e = self.max_errors()
            lines.extend(self.criterion_lines())
            lines.append(f"{self.status()}: max abs err {abs_e:.3g}, max rel err {rel_e:.3g}")
        return "\n".join(lines)


# ---- inputs --------------------------------------------------------------------------------------
def plan_trials(specs: Sequence[TensorSpec], options: VerifyOptions) -> List[Dict[str, Tuple[int, ...]]]:
    """Input shapes per trial.

    By default (``options.trials`` None) 2 trials when some dim is symbolic, else 1, and a trial whose
    shapes repeat an earlier one is dropped. An explicit trial count is honoured as given: trials with
    the same shapes still differ by their data (each trial ``i`` uses seed ``seed + i``).
    """
    symbolic = any(s.shape is None or any(not isinstance(d, int) for d in s.shape) for s in specs)
    explicit = options.trials is not None
    count = options.trials if explicit else (2 if symbolic else 1)
    trials: List[Dict[str, Tuple[int, ...]]] = []
    for i in range(max(1, count)):
        shapes = resolve_shapes(specs, options.input_shapes, trial=i)
        if explicit or shapes not in trials:
            trials.append(shapes)
    return trials


def make_trial_feeds(specs: Sequence[TensorSpec], options: VerifyOptions
                     ) -> Tuple[List[Dict[str, np.ndarray]], List[Dict[str, Tuple[int, ...]]], List[Optional[int]]]:
    """Feeds, shapes and seeds per trial: from ``options.inputs_npz`` (one trial) or seeded random data."""
    if options.inputs_npz:
        feeds = load_npz(options.inputs_npz, specs)
        return [feeds], [{k: tuple(v.shape) for k, v in feeds.items()}], [None]
    shapes_list = plan_trials(specs, options)
    seeds = [options.seed + i for i in range(len(shapes_list))]
    feeds_list = [make_feeds(specs, s, seed=seed, val_range=options.val_range) for s, seed in zip(shapes_list, seeds)]
    return feeds_list, shapes_list, seeds


def merge_input_specs(reference: Sequence[TensorSpec], candidate: Sequence[TensorSpec]) -> List[TensorSpec]:
    """The inputs both models accept, in the reference's order; InputError when they are incompatible.

    Names and element types must match; ranks must agree where both are known, and an axis fixed in one
    model is fixed in the merged spec (two different fixed sizes are incompatible).
    """
    cand = {s.name: s for s in candidate}
    ref_names = [s.name for s in reference]
    missing = [n for n in ref_names if n not in cand]
    extra = [n for n in cand if n not in ref_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append("the candidate lacks " + ", ".join(f"'{n}'" for n in missing))
        if extra:
            parts.append("only the candidate has " + ", ".join(f"'{n}'" for n in extra))
        raise InputError("incompatible inputs: " + "; ".join(parts))
    merged = []
    for r in reference:
        c = cand[r.name]
        if r.dtype != c.dtype:
            raise InputError(f"incompatible inputs: '{r.name}' is {r.dtype.name} in the original "
                             f"but {c.dtype.name} in the candidate")
        if r.shape is None or c.shape is None:
            merged.append(TensorSpec(r.name, r.dtype, r.shape if c.shape is None else c.shape))
            continue
        if len(r.shape) != len(c.shape):
            raise InputError(f"incompatible inputs: '{r.name}' has shape {r.shape_str()} in the original "
                             f"but {c.shape_str()} in the candidate")
        dims = []
        for a, b in zip(r.shape, c.shape):
            if isinstance(a, int) and isinstance(b, int) and a != b:
                raise InputError(f"incompatible inputs: '{r.name}' has shape {r.shape_str()} in the original "
                                 f"but {c.shape_str()} in the candidate")
            dims.append(a if isinstance(a, int) or not isinstance(b, int) else b)
        merged.append(TensorSpec(r.name, r.dtype, tuple(dims)))
    return merged


# ---- running -------------------------------------------------------------------------------------
@dataclass
class _Reference:
    """The original's run over every trial: feeds, shapes and seeds used, outputs, where it ran."""

    feeds: List[Dict[str, np.ndarray]]
    shapes: List[Dict[str, Tuple[int, ...]]]
    seeds: List[Optional[int]]
    outputs: List[Dict[str, np.ndarray]]
    info: RuntimeInfo
    notes: List[str] = field(default_factory=list)


def _shapes_text(shapes: Mapping[str, Tuple[int, ...]], sep: str = "x") -> str:
    return ", ".join(f"{k}:{sep.join(map(str, v))}" for k, v in shapes.items())


def _shape_failure(specs: Sequence[TensorSpec], options: VerifyOptions, shapes, tried: int,
                   err: InputError) -> InputError:
    """The error for an original that runs at none of the trial shapes: which symbolic dims were set
    to what, and the ``--input-shape`` options that would set them."""
    free = symbolic_dim_values(specs, shapes, options.input_shapes)
    if not free:
        return err
    values = [f"{label}={value}" for label, value in free.items()]
    others = f"; {tried - 1} other size(s) tried too" if tried > 1 else ""
    fix = " ".join(f"--input-shape {name}:{','.join(map(str, v))}" for name, v in shapes.items())
    return InputError(f"the original model fails at the trial input shapes {_shapes_text(shapes)} "
                      f"(symbolic dims {', '.join(values)}{others}): {err}; give sizes it accepts, "
                      f"e.g. {fix} with the symbolic dims changed")


def _run_reference(model, specs: Sequence[TensorSpec], options: VerifyOptions, what: str,
                   progress=None, runtime: Optional[str] = None) -> _Reference:
    """Run the original on every trial (:func:`plan_trials`). Where it fails at a trial's shapes and
    dims are symbolic, the next of :func:`deconv2sub.inputs.trial_shape_candidates` is tried (the
    graph may tie input sizes that the dim names do not); trial 1 failing at all of them is an
    InputError that names the symbolic dims, a later trial is dropped with a note."""
    if options.inputs_npz:
        feeds_list, shapes_list, seeds = make_trial_feeds(specs, options)
        outputs, info = _run_all(model, feeds_list, options, what, progress=progress, runtime=runtime)
        return _Reference(feeds_list, shapes_list, seeds, outputs, info)
    runner = _load(model, options, what, progress, runtime)
    ref = _Reference([], [], [], [], runner.info)
    count = len(plan_trials(specs, options))
    explicit = options.trials is not None
    for i in range(count):
        step(progress, f"running {what}", i, count)
        candidates = [c for c in trial_shape_candidates(specs, options.input_shapes, trial=i)
                      if explicit or c not in ref.shapes]
        first_err = None
        for shapes in candidates:
            feeds = make_feeds(specs, shapes, seed=options.seed + i, val_range=options.val_range)
            try:
                outputs = runner.run(feeds)
            except NoKernelError:
                raise
            except InputError as err:
                first_err = first_err or err
                continue
            ref.feeds.append(feeds)
            ref.shapes.append(shapes)
            ref.seeds.append(options.seed + i)
            ref.outputs.append(outputs)
            break
        else:
            if not candidates:
                continue
            if i == 0:
                raise _shape_failure(specs, options, candidates[0], len(candidates), first_err)
            ref.notes.append(f"trial {i + 1} skipped: {what} fails at every other input size "
                             f"tried ({len(candidates)}, e.g. {_shapes_text(candidates[0])}): "
                             f"{first_err}")
    step(progress, f"running {what}", count, count)
    del runner
    gc.collect()
    return ref


def reference_runtime(options: VerifyOptions) -> str:
    """The runtime that runs the original (see :class:`VerifyOptions`)."""
    if options.reference_runtime:
        return options.reference_runtime
    return "onnxruntime" if options.runtime in TOOLCHAINS else options.runtime


def _require_nonempty(outputs: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Refuse a comparison of nothing: when every output of every trial is empty (zero-size inputs
    from ``--inputs``, say), equal outputs prove nothing about the rewrite."""
    if outputs and all(np.size(v) == 0 for trial in outputs for v in trial.values()):
        raise InputError("every output of the original is empty at these inputs, so comparing them "
                         "proves nothing; give inputs whose outputs are not empty")


def _load(model, options: VerifyOptions, what: str, progress=None, runtime: Optional[str] = None):
    """The runner of ``model`` on ``runtime`` (default ``options.runtime``); a failure to load is
    marked ``err.stage = "load"``."""
    runtime = runtime or options.runtime
    step(progress, f"loading {what} on {runtime}")
    provider = options.provider if runtime in ("onnxruntime", "openvino") else "cpu"
    try:
        return create_runner(model, runtime=runtime, provider=provider,
                             require_cuda=options.require_cuda and runtime == options.runtime,
                             optimize=options.optimize, what=what)
    except InputError as err:
        err.stage = "load"
        raise


def _run_all(model, feeds_list, options: VerifyOptions, what: str, output_names=None,
             progress=None, runtime: Optional[str] = None):
    """Run ``model`` on every feed (on ``runtime``, default ``options.runtime``). A failure to load
    (not to run) is marked ``err.stage = "load"``."""
    runner = _load(model, options, what, progress, runtime)
    results = []
    for i, feeds in enumerate(feeds_list):
        step(progress, f"running {what}", i, len(feeds_list))
        results.append(runner.run(feeds, output_names))
    step(progress, f"running {what}", len(feeds_list), len(feeds_list))
    info = runner.info
    del runner
    gc.collect()
    return results, info


# OpenVINO's CPU plugin computes float64 models in float32: holding them to float64 tolerances would
# measure the runtime's precision, not the models. Such outputs get float32 tolerances, with a note.
_OPENVINO_F64_NOTE = "OpenVINO computes float64 in float32: float32 tolerances"


#: default tolerances when a deployment toolchain runs the candidate (its kernels, e.g. Winograd
#: convolutions, sum in other orders than ONNX Runtime's): float32 outputs within 1e-3 relative
TOOLCHAIN_TOLERANCES = (1e-3, 1e-4)


def _compare(r, c, options: VerifyOptions) -> ComparisonResult:
    if options.runtime in TOOLCHAINS and options.rtol is None and options.atol is None:
        from .toolchains import tolerances  # a toolchain's own where it has them (RKNN: float16)

        return compare_outputs(r, c, *tolerances(options.runtime, TOOLCHAIN_TOLERANCES))
    cmp = compare_outputs(r, c, options.rtol, options.atol)
    if options.runtime == "openvino" and options.rtol is None and options.atol is None:
        for k, o in enumerate(cmp.outputs):
            if o.dtype == "float64":
                rtol, atol = tolerances_for(np.float32)
                redo = compare_arrays(o.name, r[o.name], c[o.name], rtol, atol)
                redo.note = "; ".join(filter(None, [redo.note, _OPENVINO_F64_NOTE]))
                cmp.outputs[k] = redo
    return cmp


def _compare_trials(result: VerificationResult, ref, cand, shapes_list, seeds, options: VerifyOptions) -> None:
    for i, (r, c) in enumerate(zip(ref, cand)):
        result.trials.append(TrialResult(i, shapes_list[i], _compare(r, c, options), seeds[i]))
    if options.keep_outputs:
        result.outputs_ref, result.outputs_cand = list(ref), list(cand)


def verify_models(
    original: Union[onnx.ModelProto, str],
    candidate: Union[onnx.ModelProto, str],
    options: Optional[VerifyOptions] = None,
    report: Optional[ConversionReport] = None,
    progress: Optional[ProgressFn] = None,
) -> VerificationResult:
    """Compare ``candidate`` with ``original`` on the runtime; localise rewritten nodes on a mismatch.

    A runtime that cannot run the original at all (e.g. ONNX Runtime CPU has no float64 ConvTranspose)
    gives a result with ``unavailable`` set rather than an error. Any other failure of the original is
    the user's problem (InputError); a failure of the candidate is a failed verification.
    Either model may be a path instead (``convert`` passes files so that big models' weights are read by
    the runtime only, not held here as well).
    """
    options = options or VerifyOptions()
    specs = model_input_specs(_model_proto(original))
    result = VerificationResult(optimize=options.optimize)
    try:
        reference = _run_reference(original, specs, options, "the original model", progress,
                                   runtime=reference_runtime(options))
    except NoKernelError as err:
        result.unavailable = str(err)
        return result
    feeds_list, shapes_list, seeds = reference.feeds, reference.shapes, reference.seeds
    ref = reference.outputs
    _require_nonempty(ref)
    result.inputs, result.runtime, result.notes = feeds_list, reference.info, reference.notes
    del reference
    try:
        cand, result.candidate_runtime = _run_all(candidate, feeds_list, options, "the rewritten model",
                                                  progress=progress)
    except InputError as err:  # the rewrite does not even run: that is a failed verification
        result.candidate_error = str(err)
        return result
    _compare_trials(result, ref, cand, shapes_list, seeds, options)
    del ref, cand
    if not result.passed and report is not None and report.rewritten and options.runtime not in TOOLCHAINS:
        step(progress, "localising the divergence")
        pair = [_model_proto(m, with_data=True) for m in (original, candidate)]
        if all(m is not None for m in pair):
            result.culprits = localise(pair[0], pair[1], report, feeds_list[result.repro_trial], options)
    return result


#: Model files (with external data) up to this size are loaded into memory to localise a mismatch.
LOCALISE_MAX_BYTES = 1 << 30


def _model_proto(model, with_data: bool = False) -> Optional[onnx.ModelProto]:
    """``model`` itself, or the model at a path (``convert`` verifies big models from their files so
    that their weights are not held in memory): its graph only, or with its external data when
    ``with_data`` and it is small enough (else None)."""
    if isinstance(model, onnx.ModelProto):
        return model
    from .model_io import load_model, model_size_bytes

    if with_data and model_size_bytes(model) > LOCALISE_MAX_BYTES:
        return None
    return load_model(model, load_external_data=with_data)


def validate_models(
    original: onnx.ModelProto,
    candidate: onnx.ModelProto,
    options: Optional[VerifyOptions] = None,
    progress: Optional[ProgressFn] = None,
    localise: bool = True,
) -> VerificationResult:
    """Compare any two models with compatible inputs (``validate``).

    Outputs are paired by name; unpaired ones fail. Raises InputError when the inputs are incompatible,
    the original cannot load or run, or the candidate cannot load (a broken model);
    RuntimeUnavailableError when the runtime has no kernel for an op/dtype of either model (nothing could
    be compared). A candidate that loads but fails to run is a failed result. On a numeric mismatch the
    first diverging shared tensor is localised (``result.localisation``).
    """
    options = options or VerifyOptions()
    specs = merge_input_specs(model_input_specs(original), model_input_specs(candidate))
    result = VerificationResult(optimize=options.optimize)
    try:
        reference = _run_reference(original, specs, options, "the original model", progress,
                                   runtime=reference_runtime(options))
    except NoKernelError as err:
        raise RuntimeUnavailableError(f"cannot validate on this runtime: {err}") from None
    feeds_list, shapes_list, seeds = reference.feeds, reference.shapes, reference.seeds
    ref = reference.outputs
    _require_nonempty(ref)
    result.inputs, result.runtime, result.notes = feeds_list, reference.info, reference.notes
    del reference
    if options.keep_outputs:
        result.outputs_ref = list(ref)  # kept even if the candidate then fails to run
    try:
        cand, result.candidate_runtime = _run_all(candidate, feeds_list, options, "the candidate model",
                                                  progress=progress)
    except NoKernelError as err:
        raise RuntimeUnavailableError(f"cannot validate on this runtime: {err}") from None
    except InputError as err:
        if getattr(err, "stage", None) == "load":
            raise
        result.candidate_error = str(err)
        return result
    _compare_trials(result, ref, cand, shapes_list, seeds, options)
    del ref, cand
    numeric_failure = any(not o.passed for t in result.trials for o in t.comparison.outputs)
    if localise and numeric_failure and options.runtime not in TOOLCHAINS:
        result.localisation = localise_shared(original, candidate, feeds_list[result.repro_trial], options, progress)
    return result


# ---- exposing and localising ---------------------------------------------------------------------
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

    Element types come from ``types`` or shape inference; a tensor of unknown type is declared float.
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
        out.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name) or onnx.TensorProto.FLOAT, None))
    return out


def _exposed_run(original, candidate, names, feeds, options: VerifyOptions, ref_types=None, cand_types=None,
                 progress=None):
    (ref,), _ = _run_all(expose_tensors(original, names, ref_types), [feeds], options, "the original model",
                         names, progress)
    (cand,), _ = _run_all(expose_tensors(candidate, names, cand_types), [feeds], options, "the candidate model",
                          names, progress)
    return ref, cand


def localise(original, candidate, report: ConversionReport, feeds: Mapping[str, np.ndarray],
             options: VerifyOptions) -> List[Culprit]:
    """Compare the outputs of every rewritten (main-graph) node; the diverging ones, first one marked."""
    # Where each rewrite rejoins the original graph (past the consumers sunk above its shuffle): a tensor
    # both models compute.
    names = [n.rejoin or n.output for n in report.rewritten if n.graph == "main" and (n.rejoin or n.output)]
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
    return _compare({name: ref}, {name: cand}, options).outputs[0]


def _producers(model: onnx.ModelProto) -> Dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output if o}


def shared_tensors(original: onnx.ModelProto, candidate: onnx.ModelProto,
                   ref_types: Optional[Mapping[str, int]] = None,
                   cand_types: Optional[Mapping[str, int]] = None) -> List[str]:
    """Tensors produced by a main-graph node of both models, with the same known element type, in the
    original's (topological) node order."""
    ref_types = _tensor_types(original) if ref_types is None else ref_types
    cand_types = _tensor_types(candidate) if cand_types is None else cand_types
    cand_produced = _producers(candidate)
    names, seen = [], set()
    for node in original.graph.node:
        for o in node.output:
            if o and o not in seen and o in cand_produced and ref_types.get(o) and ref_types.get(o) == cand_types.get(o):
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


def localise_shared(original: onnx.ModelProto, candidate: onnx.ModelProto, feeds: Mapping[str, np.ndarray],
                    options: Optional[VerifyOptions] = None, progress: Optional[ProgressFn] = None) -> Localisation:
    """Find the first tensor, in the original's order, that both models produce and that diverges.

    At most ``options.localise_limit`` tensors are exposed per round. With more shared tensors the first
    round samples them evenly; each further round searches only between the last matching sample and the
    first diverging one, until every tensor in that window was compared.
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
            ref, cand = _exposed_run(original, candidate, names, feeds, options, ref_types, cand_types,
                                     lambda text, *a: step(progress, f"localising (round {loc.rounds}): {text}", *a))
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
                loc.note = "no shared tensor diverges (the difference arises in tensors only one model has)"
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


# ---- loading -------------------------------------------------------------------------------------
def load_for_comparison(path: str, what: str = "the model") -> onnx.ModelProto:
    """Load a model file for ``validate``: InputError (one line) when it is missing, unreadable, empty,
    truncated or not an ONNX model. The ONNX checker is not run: it rejects models that runtimes accept
    (e.g. outputs without a declared shape); whether the runtime can load the model shows next."""
    from .model_io import load_model

    return load_model(path)


# ---- reproduction files --------------------------------------------------------------------------
def _check_writable(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(f"{path} is a directory; give a file name")
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")


def save_repro_inputs(result: VerificationResult, path: str) -> int:
    """Save the inputs of the trial worth reproducing (``repro_trial``) as .npz usable with ``--inputs``;
    returns the trial index."""
    _check_writable(path)
    if not result.inputs:
        raise OutputError(f"no inputs to save to {path}")
    i = result.repro_trial
    save_npz(path, result.inputs[i])
    return i


def save_repro_outputs(result: VerificationResult, path: str) -> Optional[int]:
    """Save both models' outputs of ``repro_trial`` as .npz, keys ``original/NAME`` and ``candidate/NAME``
    (needs ``VerifyOptions.keep_outputs``; only the original's when the candidate did not run); returns
    the trial index, or None when there was nothing to save (nothing is written then)."""
    _check_writable(path)
    i = result.repro_trial
    arrays: Dict[str, Any] = {}
    if i < len(result.outputs_ref):
        arrays.update({f"original/{k}": v for k, v in result.outputs_ref[i].items()})
    if i < len(result.outputs_cand):
        arrays.update({f"candidate/{k}": v for k, v in result.outputs_cand[i].items()})
    if not arrays:
        return None
    save_npz(path, arrays)
    return i
