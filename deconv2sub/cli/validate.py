"""``deconv2sub validate``: compare any two models on the same inputs, print the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import click

from ..errors import VerificationError
from ..io.paths import check_output_path
from .groups import (
    InputArgs,
    ModelArgs,
    OutputFormatArgs,
    RuntimeArgs,
    VerifyArgs,
    group,
)
from .terminal import Printer, guarded

__all__ = ["validate"]


@dataclass(frozen=True)
class ReproArgs:
    """``--save-inputs``, ``--save-outputs``: what reproduces a failure; ``--no-localise``."""

    save_inputs: Optional[str] = None
    save_outputs: Optional[str] = None
    localise: bool = True

    @classmethod
    def options(cls):
        """The options, as ``repro``."""
        return group("repro", cls.parse, [
            click.option("--save-inputs", type=click.Path(dir_okay=False), default=None,
                         metavar="FILE.npz",
                         help="Save the inputs of the first failing trial (else trial 1); replay "
                              "them with --inputs."),
            click.option("--save-outputs", type=click.Path(dir_okay=False), default=None,
                         metavar="FILE.npz",
                         help="Save both models' outputs of that trial (keys original/NAME, "
                              "candidate/NAME)."),
            click.option("--no-localise", "no_localise", is_flag=True,
                         help="On a mismatch, do not search for the first diverging shared "
                              "tensor."),
        ])

    @classmethod
    def parse(cls, save_inputs: Optional[str], save_outputs: Optional[str],
              no_localise: bool) -> "ReproArgs":
        """The files to save must be writable (an existing one is overwritten)."""
        for option, path in (("--save-inputs", save_inputs), ("--save-outputs", save_outputs)):
            if path:
                check_output_path(path, force=True, what=option)  # an existing file is overwritten
        return cls(save_inputs, save_outputs, not no_localise)

HELP = """Compare CANDIDATE with ORIGINAL, output by output, on the same inputs.

Any two models with the same inputs can be compared, not only deconv2sub's output. Outputs are
paired by name (unpaired ones are listed and fail). Per output: max/mean abs error, max rel
error, the worst element, the smallest --atol that would pass. On a mismatch the first
tensor both graphs produce under the same name that diverges is named, with the node making
it in each model.

Exit codes: 0 all outputs match, 1 mismatch, 2 bad input (missing/broken file, incompatible
inputs, bad option), 3 runtime/provider unavailable.

\b
Example:
  deconv2sub validate model.onnx model_subpixel.onnx
  deconv2sub validate a.onnx b.onnx --input-shape x:1,3,256,256 --trials 3
  deconv2sub validate a.onnx b.onnx --save-inputs fail.npz --json >r.json
  deconv2sub validate a.onnx b.onnx --inputs fail.npz --runtime openvino
"""


@click.command(help=HELP)
@guarded
@ModelArgs.argument("original")
@ModelArgs.argument("candidate")
@RuntimeArgs.options()
@VerifyArgs.options()
@InputArgs.options()
@ReproArgs.options()
@OutputFormatArgs.options()
def validate(original: ModelArgs, candidate: ModelArgs, runtime: RuntimeArgs, verify: VerifyArgs,
             inputs: InputArgs, repro: ReproArgs, fmt: OutputFormatArgs) -> None:
    """The ``validate`` command; its ``--help`` is :data:`HELP`."""
    from ..verify.repro import load_for_comparison
    from ..verify.verification import validate_models

    options = verify.verify_options(runtime, inputs, keep_outputs=bool(repro.save_outputs))
    p = Printer(fmt)
    p.progress(f"loading {original.path}")
    ref = load_for_comparison(original.path, "the original model")
    p.progress(f"loading {candidate.path}")
    cand = load_for_comparison(candidate.path, "the candidate model")
    result = validate_models(ref, cand, options, progress=p.progress, localise=repro.localise)
    del ref, cand
    p.done_progress()
    p.info(f"Validating {candidate.path} against {original.path}")
    p.info(result.format_text(show_worst=True, verdict=False))
    saved = save_repro(p, result, repro)
    if fmt.as_json:
        p.json({"original": original.path, "candidate": candidate.path, "saved": saved,
                **result.to_dict()})
    line = verdict_line(result)
    if result.trials and not result.candidate_error:
        for text in result.criterion_lines():  # what PASSED/FAILED means, with the values applied
            p.info(text)
    p.final(line)
    if not result.passed:
        err = VerificationError(line)
        err.reported = True  # the verdict line above is the error's line
        raise err


def save_repro(p: Printer, result, repro: ReproArgs) -> dict:
    """Save what ``repro`` asks for; ``{"inputs": path, "outputs": path}`` of what was saved."""
    from ..verify.repro import save_repro_inputs, save_repro_outputs

    saved = {}
    if repro.save_inputs:
        trial = save_repro_inputs(result, repro.save_inputs)
        saved["inputs"] = repro.save_inputs
        p.info(f"saved the inputs of trial {trial + 1} to {repro.save_inputs} "
               f"(replay: --inputs {repro.save_inputs})")
    if repro.save_outputs:
        trial = save_repro_outputs(result, repro.save_outputs)
        if trial is None:
            p.info(f"no outputs to save to {repro.save_outputs}")
        else:
            saved["outputs"] = repro.save_outputs
            whose = "both models'" if result.outputs_cand else "the original's"
            p.info(f"saved {whose} outputs of trial {trial + 1} to {repro.save_outputs}")
    return saved


def verdict_line(result) -> str:
    """The final PASSED/FAILED line of ``validate``."""
    if result.candidate_error:
        return f"FAILED: {result.candidate_error}"
    abs_e, rel_e = result.max_errors()
    total = {o.name for t in result.trials for o in t.comparison.outputs}
    total |= {n for t in result.trials
              for n in t.comparison.unpaired_ref + t.comparison.unpaired_cand}
    if result.passed:
        return (f"PASSED: all {len(total)} output(s) match (max abs err {abs_e:.3g}, "
                f"max rel err {rel_e:.3g})")
    failing = result.failing_outputs()
    shown = ", ".join(f"'{n}'" for n in failing[:3]) + (", ..." if len(failing) > 3 else "")
    text = f"FAILED: {len(failing)} of {len(total)} output(s) differ ({shown})"
    loc = result.localisation
    if loc is not None and loc.first is not None:
        text += f"; diverges first at '{loc.first.tensor}' (node '{loc.first.original_node}')"
    return text
