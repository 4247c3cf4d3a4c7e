"""Verification: run a reference and a candidate model on the same inputs and compare every output.

Two entry points share the machinery:

* :func:`verify_models` — ``convert``'s check of the rewrite against the original. The original
  graph, run by the runtime, is the oracle — never our own formula.
* :func:`validate_models` — ``validate``: any two models with compatible inputs (ours or not).

When dims are symbolic the models are compared at several input shapes (trials, :mod:`.trials`), so
that a size accidentally baked into a graph shows up. To keep memory low on big models, the
reference runs first (all trials), its outputs are kept and its session freed, then the candidate
runs. On a mismatch the divergence is localised (:mod:`.localise`).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from ..errors import InputError, NoKernelError, RuntimeUnavailableError
from ..io.load import load_model, model_size_bytes
from ..progress import ProgressFn, step
from ..report import ConversionReport
from ..runtime.base import RuntimeInfo
from ..runtime.runners import TOOLCHAINS
from .inputs import TensorSpec, make_feeds, model_input_specs, trial_shape_candidates
from .localise import localise, localise_shared
from .options import VerifyOptions
from .results import TrialResult, VerificationResult
from .running import compare_for_runtime, load_runner, reference_runtime, run_all
from .trials import make_trial_feeds, merge_input_specs, plan_trials, shape_failure, shapes_text

__all__ = ["LOCALISE_MAX_BYTES", "validate_models", "verify_models"]

#: Model files (with external data) up to this size are loaded into memory to localise a mismatch.
LOCALISE_MAX_BYTES = 1 << 30


@dataclass
class _Reference:
    """The original's run over every trial: feeds, shapes and seeds used, outputs, where it ran."""

    feeds: List[Dict[str, np.ndarray]]
    shapes: List[Dict[str, Tuple[int, ...]]]
    seeds: List[Optional[int]]
    outputs: List[Dict[str, np.ndarray]]
    info: RuntimeInfo
    notes: List[str] = field(default_factory=list)


def _run_reference(model, specs: Sequence[TensorSpec], options: VerifyOptions, what: str,
                   progress=None, runtime: Optional[str] = None) -> _Reference:
    """Run the original on every trial (:func:`~.trials.plan_trials`).

    Where it fails at a trial's shapes and dims are symbolic, the next of
    :func:`deconv2sub.verify.inputs.trial_shape_candidates` is tried (the graph may tie input sizes
    that the dim names do not); trial 1 failing at all of them is an InputError that names the
    symbolic dims, a later trial is dropped with a note.
    """
    if options.inputs_npz:
        feeds_list, shapes_list, seeds = make_trial_feeds(specs, options)
        outputs, info = run_all(model, feeds_list, options, what, progress=progress,
                                runtime=runtime)
        return _Reference(feeds_list, shapes_list, seeds, outputs, info)
    runner = load_runner(model, options, what, progress, runtime)
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
                raise shape_failure(specs, options, candidates[0], len(candidates), first_err)
            ref.notes.append(f"trial {i + 1} skipped: {what} fails at every other input size "
                             f"tried ({len(candidates)}, e.g. {shapes_text(candidates[0])}): "
                             f"{first_err}")
    step(progress, f"running {what}", count, count)
    del runner
    gc.collect()
    return ref


def _require_nonempty(outputs: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Refuse a comparison of nothing.

    When every output of every trial is empty (zero-size inputs from ``--inputs``, say), equal
    outputs prove nothing about the rewrite.
    """
    if outputs and all(np.size(v) == 0 for trial in outputs for v in trial.values()):
        raise InputError("every output of the original is empty at these inputs, so comparing "
                         "them proves nothing; give inputs whose outputs are not empty")


def _compare_trials(result: VerificationResult, ref, cand, shapes_list, seeds,
                    options: VerifyOptions) -> None:
    for i, (r, c) in enumerate(zip(ref, cand)):
        cmp = compare_for_runtime(r, c, options)
        result.trials.append(TrialResult(i, shapes_list[i], cmp, seeds[i]))
    if options.keep_outputs:
        result.outputs_ref, result.outputs_cand = list(ref), list(cand)


def verify_models(
    original: Union[onnx.ModelProto, str],
    candidate: Union[onnx.ModelProto, str],
    options: Optional[VerifyOptions] = None,
    report: Optional[ConversionReport] = None,
    progress: Optional[ProgressFn] = None,
) -> VerificationResult:
    """Compare ``candidate`` with ``original``; on a mismatch, localise the rewritten nodes.

    A runtime that cannot run the original at all (e.g. ONNX Runtime CPU has no float64
    ConvTranspose) gives a result with ``unavailable`` set rather than an error. Any other failure
    of the original is the user's problem (InputError); a failure of the candidate is a failed
    verification. Either model may be a path instead (``convert`` passes files so that big models'
    weights are read by the runtime only, not held here as well).
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
        cand, result.candidate_runtime = run_all(candidate, feeds_list, options,
                                                 "the rewritten model", progress=progress)
    except InputError as err:  # the rewrite does not even run: that is a failed verification
        result.candidate_error = str(err)
        return result
    _compare_trials(result, ref, cand, shapes_list, seeds, options)
    del ref, cand
    rewritten = report is not None and report.rewritten
    if not result.passed and rewritten and options.runtime not in TOOLCHAINS:
        step(progress, "localising the divergence")
        pair = [_model_proto(m, with_data=True) for m in (original, candidate)]
        if all(m is not None for m in pair):
            feeds = feeds_list[result.repro_trial]
            result.culprits = localise(pair[0], pair[1], report, feeds, options)
    return result


def _model_proto(model, with_data: bool = False) -> Optional[onnx.ModelProto]:
    """``model`` itself, or the model at a path.

    ``convert`` verifies big models from their files so that their weights are not held in memory:
    its graph only, or with its external data when ``with_data`` and it is small enough (else None).
    """
    if isinstance(model, onnx.ModelProto):
        return model
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

    Outputs are paired by name; unpaired ones fail. Raises InputError when the inputs are
    incompatible, the original cannot load or run, or the candidate cannot load (a broken model);
    RuntimeUnavailableError when the runtime has no kernel for an op/dtype of either model (nothing
    could be compared). A candidate that loads but fails to run is a failed result. On a numeric
    mismatch the first diverging shared tensor is localised (``result.localisation``).
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
        cand, result.candidate_runtime = run_all(candidate, feeds_list, options,
                                                 "the candidate model", progress=progress)
    except NoKernelError as err:
        raise RuntimeUnavailableError(f"cannot validate on this runtime: {err}") from None
    except InputError as err:
        if err.stage == "load":
            raise
        result.candidate_error = str(err)
        return result
    _compare_trials(result, ref, cand, shapes_list, seeds, options)
    del ref, cand
    numeric_failure = any(not o.passed for t in result.trials for o in t.comparison.outputs)
    if localise and numeric_failure and options.runtime not in TOOLCHAINS:
        feeds = feeds_list[result.repro_trial]
        result.localisation = localise_shared(original, candidate, feeds, options, progress)
    return result

