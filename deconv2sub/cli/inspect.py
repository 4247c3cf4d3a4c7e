"""``deconv2sub inspect``: what ``convert`` would do to each ConvTranspose, and its costs."""

from __future__ import annotations

import click

from .groups import ConvertArgs, InputArgs, ModelArgs, OutputFormatArgs
from .terminal import Printer, guarded

__all__ = ["inspect_cmd"]

HELP = """List every ConvTranspose of MODEL and what convert would make of it.

One row per ConvTranspose (subgraphs included): input shape, attributes, whether it can be
rewritten (and why not), the planned Conv + shuffle + crop, MACs and weight bytes before and
after; totals at the end. MACs are per sample (batch 1) and need known input sizes: give
--input-shape for symbolic dims. Nothing is written.

\b
Example:
  deconv2sub inspect samples/dcgan_generator.onnx
  deconv2sub inspect model.onnx --input-shape x:1,3,512,512
  deconv2sub inspect model.onnx --json | jq '.totals'
"""


@click.command("inspect", help=HELP)
@guarded
@ModelArgs.argument("model")
@InputArgs.options(data=False, trials=False)
@ConvertArgs.options()
@OutputFormatArgs.options()
def inspect_cmd(model: ModelArgs, inputs: InputArgs, conversion: ConvertArgs,
                fmt: OutputFormatArgs) -> None:
    """The ``inspect`` command; its ``--help`` is :data:`HELP`."""
    from ..inspection import inspect_model
    from ..io.load import load_model

    p = Printer(fmt)
    p.progress(f"loading {model.path}")
    proto = load_model(model.path)
    report = inspect_model(proto, conversion.convert_options(), inputs.shapes, path=model.path,
                           progress=p.progress)
    del proto
    p.done_progress()
    p.info(report.format_text())
    if fmt.as_json:
        p.json(report.to_dict())
    else:
        p.final(report.summary())
