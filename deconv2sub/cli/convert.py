"""``deconv2sub convert``: parse, call :func:`deconv2sub.pipeline.run_convert`, print."""

from __future__ import annotations

import click

from ..errors import VerificationError
from .groups import (
    ConvertArgs,
    InputArgs,
    ModelArgs,
    OutputArgs,
    OutputFormatArgs,
    RuntimeArgs,
    VerifyArgs,
)
from .terminal import Printer, guarded

__all__ = ["convert"]

HELP = """Rewrite every ConvTranspose of MODEL, verify against the original, save to OUTPUT.

OUTPUT defaults to MODEL's name with _subpixel before the extension, in MODEL's folder
(model.onnx -> model_subpixel.onnx); an existing file is kept unless --force.

\b
Example:
  deconv2sub convert model.onnx
  deconv2sub convert samples/dcgan_generator.onnx -o out/dcgan_subpixel.onnx
  deconv2sub convert model.onnx -o out.onnx --input-shape x:1,3,256,256
  deconv2sub convert model.onnx -o out.onnx --provider cuda --json
"""


@click.command(help=HELP)
@guarded
@ModelArgs.argument("model")
@OutputArgs.options()
@ConvertArgs.options(toolchains=True)
@RuntimeArgs.options()
@VerifyArgs.options(skip=True)
@InputArgs.options()
@OutputFormatArgs.options()
def convert(model: ModelArgs, output: OutputArgs, conversion: ConvertArgs, runtime: RuntimeArgs,
            verify: VerifyArgs, inputs: InputArgs, fmt: OutputFormatArgs) -> None:
    """The ``convert`` command; its ``--help`` is :data:`HELP`."""
    from ..pipeline import ConvertJob, default_output_path, run_convert

    job = ConvertJob(model=model.path, output=output.resolve(model.path, default_output_path),
                     force=output.force, verify=verify.verify,
                     convert_options=conversion.convert_options(runtime),
                     verify_options=verify.verify_options(runtime, inputs),
                     external_data=output.external_data)
    p = Printer(fmt)
    try:
        result = run_convert(job, progress=p.progress)
    except VerificationError as err:
        if err.result is not None:
            print_result(p, err.result)
        raise
    print_result(p, result)
    from ..io.load import model_size_bytes

    size = model_size_bytes(job.output)  # with its external data file, where it has one
    verification = result.verification.status() if result.verification else "skipped"
    p.final(f"saved {job.output} ({size / 1e6:.2f} MB): {result.report.summary()}; "
            f"verification {verification}; {sum(result.timings.values()):.2f} s")


def print_result(p: Printer, result) -> None:
    """The per-node lines, warnings and verification of ``result``, and its JSON with --json."""
    from ..targets.bugs import BugHit

    p.done_progress()
    for node in result.report.nodes:
        where = "" if node.graph == "main" else f" [{node.graph}]"
        p.info("  " + node.summary() + where)
    p.info(result.report.summary())
    for hit in result.report.toolchain_warnings:
        p.final("warning: known toolchain bug: " + BugHit(**hit).line())
    for warning in result.report.warnings:
        p.final(f"warning: {warning}")
    v = result.verification
    if v is not None:
        p.info(v.format_text())
        if v.unavailable:
            p.final(f"warning: the rewrite was NOT verified: {v.unavailable}")
    if p.as_json:
        p.json(result.to_dict())
