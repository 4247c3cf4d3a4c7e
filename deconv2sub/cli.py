"""The `deconv2sub` command line: parses options, calls the library, prints. No logic of its own.

Exit codes: 0 success · 1 verification mismatch · 2 bad input (file, model, option, output path) ·
3 requested runtime/provider unavailable (e.g. --require-cuda) · 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Optional

import click

from .errors import EXIT_BAD_INPUT, Deconv2SubError, InputError, VerificationError

EXIT_INTERRUPTED = 130


# ---- shared option groups (Polygraphy-style) -----------------------------------------------------
def runtime_options(f):
    f = click.option("--runtime", type=click.Choice(["onnxruntime", "openvino"]), default="onnxruntime",
                     show_default=True, help="Runtime that runs both models.")(f)
    f = click.option("--provider", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
                     help="Execution provider: auto = CUDA when it truly works, else CPU (always reported).")(f)
    f = click.option("--require-cuda", is_flag=True, help="Fail (exit 3) instead of falling back to CPU.")(f)
    return f


def input_options(f):
    f = click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...",
                     help="Shape for an input with symbolic dims (repeatable), e.g. x:1,3,224,224.")(f)
    f = click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False), default=None,
                     help="Feed real data from an .npz file (one array per input name).")(f)
    f = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")(f)
    f = click.option("--val-range", type=(float, float), default=None, metavar="LOW HIGH",
                     help="Range of random input values (default: N(0,1) floats, [0,4) integers).")(f)
    f = click.option("--trials", type=click.IntRange(min=1), default=None,
                     help="Input shapes to try (default: 2 when dims are symbolic, else 1).")(f)
    return f


def tolerance_options(f):
    f = click.option("--atol", type=float, default=None, help="Absolute tolerance (default per dtype; float32 1e-5).")(f)
    f = click.option("--rtol", type=float, default=None, help="Relative tolerance (default per dtype; float32 1e-4).")(f)
    return f


def output_options(f):
    f = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON report on stdout.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Only print errors and the final line.")(f)
    return f


def _verify_options(runtime, provider, require_cuda, input_shapes, inputs_npz, seed, val_range, trials, atol, rtol,
                    optimize=False):
    from .inputs import parse_input_shapes
    from .verify import VerifyOptions

    if require_cuda and provider == "cpu":
        raise InputError("--require-cuda contradicts --provider cpu")
    if inputs_npz and not os.path.isfile(inputs_npz):
        raise InputError(f"{inputs_npz}: no such file")
    return VerifyOptions(runtime=runtime, provider="cuda" if require_cuda else provider, require_cuda=require_cuda,
                         optimize=optimize, rtol=rtol, atol=atol, seed=seed, val_range=val_range,
                         input_shapes=parse_input_shapes(input_shapes), inputs_npz=inputs_npz, trials=trials)


class _Printer:
    """Human output goes to stderr when --json owns stdout; progress only on a TTY and not --quiet."""

    def __init__(self, as_json: bool, quiet: bool):
        self.as_json, self.quiet = as_json, quiet
        self.stream = sys.stderr if as_json else sys.stdout
        self.tty = sys.stderr.isatty() and not quiet

    def info(self, text: str) -> None:
        if not self.quiet:
            click.echo(text, file=self.stream)

    def final(self, text: str) -> None:
        click.echo(text, file=self.stream)

    def progress(self, text: str) -> None:
        if self.tty:
            click.echo(f"\r\033[K... {text}", file=sys.stderr, nl=False)

    def done_progress(self) -> None:
        if self.tty:
            click.echo("\r\033[K", file=sys.stderr, nl=False)

    def json(self, data) -> None:
        click.echo(json.dumps(data, indent=2, default=str))


def _guard(fn):
    """Turn library errors into one line on stderr and the documented exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Deconv2SubError as err:
            click.echo(f"deconv2sub: error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("deconv2sub: interrupted; nothing written", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except MemoryError:
            click.echo("deconv2sub: error: out of memory", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except OSError as err:
            click.echo(f"deconv2sub: error: {err.strerror or err} ({getattr(err, 'filename', '') or ''})", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper


# ---- commands ------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="deconv2sub")
def main():
    """Rewrite ONNX ConvTranspose into exact sub-pixel convolutions (Conv + DepthToSpace), verify, save.

    \b
    Exit codes: 0 ok, 1 verification mismatch, 2 bad input, 3 runtime/provider unavailable.
    """


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("-o", "--output", required=True, type=click.Path(), help="Where to save the rewritten model.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists (never the input).")
@click.option("--no-verify", is_flag=True, help="Skip the numerical check against the original.")
@click.option("--shuffle", type=click.Choice(["auto", "reshape"]), default="auto", show_default=True,
              help="auto: DepthToSpace where it can express the shuffle; reshape: always Reshape/Transpose.")
@click.option("--order", type=click.Choice(["auto", "CRD", "DCR"]), default="auto", show_default=True,
              help="Channel order of the low-resolution Conv.")
@click.option("--external-data/--no-external-data", default=None,
              help="Save weights in OUTPUT.data beside the model (default: like the input, or when > 1.8 GB).")
@runtime_options
@input_options
@tolerance_options
@output_options
@_guard
def convert(model, output, force, no_verify, shuffle, order, external_data, runtime, provider, require_cuda,
            input_shapes, inputs_npz, seed, val_range, trials, atol, rtol, as_json, quiet):
    """Rewrite every ConvTranspose of MODEL, verify against the original, save to OUTPUT.

    \b
    Example:
      deconv2sub convert samples/dcgan_generator.onnx -o dcgan_subpixel.onnx
      deconv2sub convert model.onnx -o out.onnx --input-shape x:1,3,256,256 --provider cuda --json
    """
    from .pipeline import ConvertJob, run_convert
    from .rewrite import ConvertOptions

    p = _Printer(as_json, quiet)
    job = ConvertJob(
        model=model, output=output, force=force, verify=not no_verify,
        convert_options=ConvertOptions(shuffle=shuffle, order=order),
        verify_options=_verify_options(runtime, provider, require_cuda, input_shapes, inputs_npz, seed, val_range,
                                       trials, atol, rtol),
        external_data=external_data,
    )
    try:
        result = run_convert(job, progress=p.progress)
    except VerificationError as err:
        p.done_progress()
        res = getattr(err, "result", None)
        if res is not None:
            _print_convert(p, res)
            if as_json:
                p.json(res.to_dict())
        raise
    p.done_progress()
    _print_convert(p, result)
    if as_json:
        p.json(result.to_dict())
    size = os.path.getsize(output)
    p.final(f"saved {output} ({size / 1e6:.2f} MB): {result.report.summary()}; "
            f"verification {result.verification.status() if result.verification else 'skipped'}; "
            f"{sum(result.timings.values()):.2f} s")


def _print_convert(p: _Printer, result) -> None:
    for node in result.report.nodes:
        where = "" if node.graph == "main" else f" [{node.graph}]"
        p.info("  " + node.summary() + where)
    p.info(result.report.summary())
    v = result.verification
    if v is not None:
        p.info(v.format_text())
        if v.unavailable:
            p.final(f"warning: the rewrite was NOT verified: {v.unavailable}")


if __name__ == "__main__":  # pragma: no cover
    main()
