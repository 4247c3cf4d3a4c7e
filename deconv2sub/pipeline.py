"""The `convert` job as a library call: load → rewrite → stage → verify → commit, with timings.

The CLI only parses options and prints what this returns; pipelines can call it directly.
Nothing is written unless verification passed (or was skipped on request, or the runtime cannot run
the original at all, which is reported); the input model and its external data are never written.

Memory: the input is loaded without its external data; only the ConvTranspose weights are read (and
replaced by their rewritten form). The rewritten model is written once, into a temporary folder
beside the output, streaming untouched weights from the input's data file and dropping in-memory
data as it goes. Verification then runs both models from their files (the runtime holds one model at
a time: the original runs first, its outputs are kept, it is freed, then the candidate runs), and
the staged files are moved into place only when it passed. So a model's weights are held about once
by us and once by the runtime, never several times over.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

from .api import convert_for_save
from .errors import InputError, NoKernelError, VerificationError
from .io.check import checker_complaint
from .io.external_data import verify_external_data
from .io.load import load_model, model_files
from .io.paths import check_output_path
from .io.save import stage_model
from .progress import ProgressFn
from .report import ConversionReport
from .rewrite.options import ConvertOptions
from .runtime.runners import create_runner
from .verify.options import VerifyOptions
from .verify.results import VerificationResult
from .verify.verification import verify_models

__all__ = ["ConvertJob", "ConvertResult", "default_output_path", "run_convert"]


@dataclass
class ConvertJob:
    """What to convert, where to save it, and how to rewrite and verify."""

    model: str
    output: str
    force: bool = False
    verify: bool = True
    convert_options: ConvertOptions = field(default_factory=ConvertOptions)
    verify_options: VerifyOptions = field(default_factory=VerifyOptions)
    # None: keep the input's layout (external if it had), else auto
    external_data: Optional[bool] = None


@dataclass
class ConvertResult:
    """The job's report, verification (None when skipped), whether it was saved, timings (s)."""

    job: ConvertJob
    report: ConversionReport
    verification: Optional[VerificationResult] = None
    saved: bool = False
    timings: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``--json`` report of ``convert``."""
        return {
            "input": self.job.model,
            "output": self.job.output,
            "saved": self.saved,
            "conversion": self.report.to_dict(),
            "verification": None if self.verification is None else self.verification.to_dict(),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


def run_convert(job: ConvertJob, progress: Optional[ProgressFn] = None) -> ConvertResult:
    """Run the job; nothing is written when it raises.

    Raises:
        InputError, OutputError: bad input or output path.
        VerificationError: on a mismatch; ``err.result`` is the :class:`ConvertResult`.
    """
    say = progress or (lambda *_args: None)
    timings: Dict[str, float] = {}
    t = time.perf_counter()
    say(f"loading {job.model}")
    # Read once: the model, then the files it must not overwrite (it and its external data).
    original = load_model(job.model, load_external_data=False)
    protect = model_files(job.model, original)
    # Refuse a bad output path before the rewrite (save_model checks again, atomically).
    save_model_precheck(job, protect)
    verify_external_data(original, job.model)
    complaint = checker_complaint(job.model)  # from the file: external data is not read
    if complaint is not None:
        _require_ort_loads(job.model, complaint)  # before the rewrite meets a malformed graph
    base_dir = os.path.dirname(os.path.abspath(job.model))
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    say("rewriting ConvTranspose nodes")
    converted, report, detached = convert_for_save(original, _convert_options(job), base_dir)
    del original
    timings["convert"] = time.perf_counter() - t
    result = ConvertResult(job, report, timings=timings)
    if complaint is not None:
        report.warnings.append(f"the input model does not pass the ONNX checker: {complaint}")

    t = time.perf_counter()
    say(f"writing {job.output}")
    staged = stage_model(converted, job.output, force=job.force,
                         external_data=_output_external_data(job, protect), protect=protect,
                         source_dir=base_dir, consume=True, detached=detached)
    del converted, detached
    with staged:  # discarded unless committed
        _check_output(staged.model_path, complaint, report)
        timings["save"] = time.perf_counter() - t

        if job.verify and report.rewritten:
            t = time.perf_counter()
            result.verification = verify_models(job.model, staged.model_path, job.verify_options,
                                                report, progress=say)
            timings["verify"] = time.perf_counter() - t
            if result.verification.verified and not result.verification.passed:
                raise VerificationError(_mismatch_line(result.verification), result=result)

        t = time.perf_counter()
        staged.commit()
        timings["save"] += time.perf_counter() - t
    result.saved = True
    return result


def _require_ort_loads(path: str, complaint: str) -> None:
    """Accept a model the ONNX checker refused (``complaint``) only if ONNX Runtime loads it.

    The checker is stricter than the runtime (e.g. on graph outputs declared without a shape); what
    the runtime loads is a model. It is asked before the rewrite, which relies on a well-formed
    graph (a truncated or corrupted file can still parse). A missing kernel (e.g. float64
    ConvTranspose on CPU) counts as loaded: the runtime read and resolved the graph.
    """
    try:
        runner = create_runner(path, runtime="onnxruntime", provider="cpu", what="the input model")
    except NoKernelError:
        return
    except InputError as err:
        raise InputError(f"the input model is not a valid ONNX model: {complaint}; and {err}"
                         ) from None
    del runner


def _check_output(path: str, input_complaint: Optional[str], report: ConversionReport) -> None:
    """The rewritten model must pass the ONNX checker whenever the input did.

    Else the rewrite is at fault: refused. An input that did not may hand its defect on; a new
    complaint is reported.
    """
    complaint = checker_complaint(path)
    if complaint is None or complaint == input_complaint:
        return
    if input_complaint is None:
        raise InputError(f"the rewritten model is not a valid ONNX model: {complaint}")
    report.warnings.append(f"the rewritten model does not pass the ONNX checker: {complaint}")


def _convert_options(job: ConvertJob) -> ConvertOptions:
    """The job's ConvertOptions, with the input shapes verification runs at.

    They are also the sizes the emission choice assumes, unless the options name their own
    (``ConvertOptions.input_shapes``).
    """
    options = job.convert_options
    if not options.input_shapes and job.verify_options.input_shapes:
        options = dataclasses.replace(options, input_shapes=dict(job.verify_options.input_shapes))
    return options


def default_output_path(model: str) -> str:
    """Where ``convert`` saves when no output is given.

    Beside the input, ``_subpixel`` before the extension (``dir/model.onnx`` ->
    ``dir/model_subpixel.onnx``). Never the input itself.
    """
    folder, name = os.path.split(os.path.normpath(model))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f"{stem}_subpixel{ext or '.onnx'}")


def _output_external_data(job: ConvertJob, protect: Sequence[os.PathLike]) -> Optional[bool]:
    """Whether the output gets external data.

    As the job says, else as the input had (None: the save decides by size).
    """
    if job.external_data is None and len(protect) > 1:
        return True  # the input kept its weights outside: so does the output
    return job.external_data


def save_model_precheck(job: ConvertJob, protect: Sequence[os.PathLike] = ()) -> None:
    """Refuse a bad output path before any work (:func:`deconv2sub.io.save.check_output_path`).

    ``protect``: the input's files (``io.load.model_files``; the model path alone when empty).
    The output's data file is checked too when it is known to get one.
    """
    check_output_path(job.output, job.force, list(protect) or [job.model],
                      data_file=bool(_output_external_data(job, protect)))


def _mismatch_line(v: VerificationResult) -> str:
    if v.candidate_error:
        return f"verification FAILED: {v.candidate_error}"
    abs_e, rel_e = v.max_errors()
    who = ""
    if v.culprits:
        who = "; diverging rewritten node(s): " + ", ".join(f"'{c.node}'" for c in v.culprits)
    return (f"verification FAILED: max abs err {abs_e:.3g}, max rel err {rel_e:.3g}{who}; "
            "nothing written")
