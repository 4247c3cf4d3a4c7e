"""The `deconv2sub` command line: parses options, calls the library, prints. No logic of its own.

Exit codes: 0 success · 1 verification mismatch · 2 bad input (file, model, option, output path) ·
3 requested runtime/provider unavailable (e.g. --require-cuda) · 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from typing import List, Optional

import click

from .errors import EXIT_BAD_INPUT, Deconv2SubError, InputError, VerificationError

EXIT_INTERRUPTED = 130


# ---- shared option groups (Polygraphy-style) -----------------------------------------------------
def runtime_options(f):
    f = click.option("--runtime", type=click.Choice(["onnxruntime", "openvino", "ncnn", "mnn", "tflite", "tvm",
                                                     "iree", "rknn"]), default="onnxruntime", show_default=True,
                     help="Runtime that runs the models. A deployment toolchain (ncnn, mnn, tflite, tvm, iree, rknn; "
                          "installed separately) converts the candidate with its own converter and runs it; "
                          "the original then runs on onnxruntime.")(f)
    f = click.option("--provider", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
                     help="Execution provider: auto = CUDA when it truly works, else CPU (always reported).")(f)
    f = click.option("--require-cuda", is_flag=True, help="Fail (exit 3) instead of falling back to CPU.")(f)
    return f


def input_shape_option(f):
    return click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...",
                        help="Shape for an input with symbolic dims (repeatable), e.g. x:1,3,224,224.")(f)


def input_data_options(f):
    f = input_shape_option(f)
    f = click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False), default=None,
                     help="Feed real data from an .npz file (one array per input name).")(f)
    f = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")(f)
    f = click.option("--val-range", type=(float, float), default=None, metavar="LOW HIGH",
                     help="Range of random input values (default: N(0,1) floats, [0,4) integers).")(f)
    return f


def input_options(f):
    f = input_data_options(f)
    f = click.option("--trials", type=click.IntRange(min=1), default=None,
                     help="Input sets to compare, trial i with seed+i (and another size for symbolic dims) "
                          "[default: 2 when dims are symbolic, else 1].")(f)
    return f


def emission_options(f):
    f = click.option("--shuffle", type=click.Choice(["auto", "reshape"]), default="auto", show_default=True,
                     help="auto: DepthToSpace where it can express the shuffle; reshape: always Reshape/Transpose.")(f)
    f = click.option("--order", type=click.Choice(["auto", "CRD", "DCR"]), default="auto", show_default=True,
                     help="Channel order of the low-resolution Conv.")(f)
    f = click.option("--strategy", type=click.Choice(["default", "auto", "depth_to_space", "low_rank_transpose", "transpose",
                                                      "two_stage", "transpose_gather", "pointwise_gemm",
                                                      "per_phase", "channels_last", "per_phase_channels_last"]),
                     default="default", show_default=True,
                     help="Emission: default (the --target profile's choice), auto (time the candidates per node on "
                          "--runtime/--provider, cached), or a fixed one for reproducible output. --shuffle/--order "
                          "apply to depth_to_space.")(f)
    f = click.option("--target", default="portable", show_default=True, callback=_target_profile,
                     metavar="NAME|FILE.toml",
                     help="Deployment target: what the rewrite may emit and prefers. Built in: "
                          + ", ".join(_target_names()) + "; or a TOML profile file (see README).")(f)
    return f


def _target_names():
    from .targets import TARGET_NAMES

    return TARGET_NAMES


def _target_profile(ctx, param, value):
    """``--target``: a built-in name or a TOML file, resolved once into a TargetProfile."""
    from .targets import ProfileError, resolve

    try:
        return resolve(value)
    except ProfileError as err:
        raise click.BadParameter(str(err)) from None


def _toolchain_names(ctx, param, value):
    from .targets import ALL_BUGS
    from .targets.bugs import toolchains_with_bugs

    known = toolchains_with_bugs(ALL_BUGS)
    bad = [v for v in value if v not in known]
    if bad:
        raise click.BadParameter(f"no known bugs recorded for {', '.join(bad)} (known: {', '.join(known)})")
    return tuple(value)


def ort_opt_option(f):
    return click.option("--ort-opt", is_flag=True,
                        help="Turn ONNX Runtime graph optimisations on for the comparison (off by default, so "
                             "that the graphs compared are the graphs on disk).")(f)


def tolerance_options(f):
    f = click.option("--atol", type=float, default=None, help="Absolute tolerance (default per dtype; float32 1e-5).")(f)
    f = click.option("--rtol", type=float, default=None, help="Relative tolerance (default per dtype; float32 1e-4).")(f)
    return f


def output_options(f):
    f = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON report on stdout.")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="Only print errors and the final line.")(f)
    return f


def _verify_options(runtime, provider, require_cuda, input_shapes, inputs_npz, seed, val_range, trials, atol, rtol,
                    optimize=False, keep_outputs=False):
    _check_tolerances(atol, rtol)
    if require_cuda and provider == "cpu":
        raise InputError("--require-cuda contradicts --provider cpu")
    if inputs_npz and not os.path.isfile(inputs_npz):
        raise InputError(f"{inputs_npz}: no such file")
    from .inputs import parse_input_shapes
    from .verify import VerifyOptions

    return VerifyOptions(runtime=runtime, provider="cuda" if require_cuda else provider, require_cuda=require_cuda,
                         optimize=optimize, rtol=rtol, atol=atol, seed=seed, val_range=val_range,
                         input_shapes=parse_input_shapes(input_shapes), inputs_npz=inputs_npz, trials=trials,
                         keep_outputs=keep_outputs)


def _check_tolerances(atol: Optional[float], rtol: Optional[float]) -> None:
    """Refuse a tolerance that makes the check meaningless: a negative one fails every element (so
    verification would blame every rewritten node), NaN compares false with everything, and an
    infinite one passes anything.
    """
    for name, value in (("--atol", atol), ("--rtol", rtol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InputError(f"bad {name} {value:g}: a tolerance must be a finite number >= 0")


def _require_model_file(path: str) -> None:
    """Fail fast on a missing model, before the heavy modules (onnx, onnxruntime) are imported;
    every other problem with the file is found when it is loaded.
    """
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")


class _Printer:
    """Human output goes to stderr when --json owns stdout; progress only on a TTY and not --quiet."""

    def __init__(self, as_json: bool, quiet: bool):
        from .progress import Progress

        self.as_json, self.quiet = as_json, quiet
        self.stream = sys.stderr if as_json else sys.stdout
        self.progress = Progress.for_cli(quiet)

    def info(self, text: str) -> None:
        if not self.quiet:
            self.done_progress()
            click.echo(text, file=self.stream)

    def final(self, text: str) -> None:
        self.done_progress()
        click.echo(text, file=self.stream)

    def done_progress(self) -> None:
        self.progress.clear()

    def json(self, data) -> None:
        self.done_progress()
        click.echo(json.dumps(data, indent=2, default=str))


def _guard(fn):
    """Turn library errors into one line on stderr and the documented exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Deconv2SubError as err:
            if not getattr(err, "reported", False):  # a command may have printed its own verdict already
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
    convert   rewrite, verify, save          validate  compare any two models
    inspect   what convert would do, costs   bench     latency before/after

    \b
    Exit codes: 0 ok, 1 verification mismatch, 2 bad input,
    3 runtime/provider unavailable.
    """


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Where to save the rewritten model [default: MODEL_subpixel.onnx beside MODEL].")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists (never the input).")
@click.option("--no-verify", is_flag=True, help="Skip the numerical check against the original.")
@emission_options
@click.option("--toolchain", "toolchains", multiple=True, callback=_toolchain_names, metavar="NAME",
              help="Warn when the output hits a known bug of this deployment toolchain (repeatable).")
@click.option("--external-data/--no-external-data", default=None,
              help="Save weights in OUTPUT.data beside the model (default: like the input, or when > 1.8 GB).")
@runtime_options
@ort_opt_option
@input_options
@tolerance_options
@output_options
@_guard
def convert(model, output, force, no_verify, shuffle, order, strategy, target, toolchains, external_data, runtime, provider, require_cuda, ort_opt,
            input_shapes, inputs_npz, seed, val_range, trials, atol, rtol, as_json, quiet):
    """Rewrite every ConvTranspose of MODEL, verify against the original, save to OUTPUT.

    OUTPUT defaults to MODEL's name with _subpixel before the extension, in MODEL's folder
    (model.onnx -> model_subpixel.onnx); an existing file is kept unless --force.

    \b
    Example:
      deconv2sub convert model.onnx
      deconv2sub convert samples/dcgan_generator.onnx -o out/dcgan_subpixel.onnx
      deconv2sub convert model.onnx -o out.onnx --input-shape x:1,3,256,256
      deconv2sub convert model.onnx -o out.onnx --provider cuda --json
    """
    _require_model_file(model)
    verify_options = _verify_options(runtime, provider, require_cuda, input_shapes, inputs_npz, seed,
                                     val_range, trials, atol, rtol, optimize=ort_opt)
    from .pipeline import ConvertJob, default_output_path, run_convert
    from .rewrite.options import ConvertOptions

    p = _Printer(as_json, quiet)
    job = ConvertJob(
        model=model, output=output or default_output_path(model), force=force, verify=not no_verify,
        convert_options=ConvertOptions(shuffle=shuffle, order=order, strategy=strategy,
                                       tune_runtime=runtime if runtime in ("onnxruntime", "openvino") else "onnxruntime",
                                       tune_provider=provider, target=target, toolchains=toolchains),
        verify_options=verify_options,
        external_data=external_data,
    )
    output = job.output
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
    from .targets.bugs import BugHit

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


@main.command()
@click.argument("original", type=click.Path(dir_okay=True))
@click.argument("candidate", type=click.Path(dir_okay=True))
@runtime_options
@ort_opt_option
@input_options
@tolerance_options
@click.option("--save-inputs", type=click.Path(dir_okay=False), default=None, metavar="FILE.npz",
              help="Save the inputs of the first failing trial (else trial 1); replay them with --inputs.")
@click.option("--save-outputs", type=click.Path(dir_okay=False), default=None, metavar="FILE.npz",
              help="Save both models' outputs of that trial (keys original/NAME, candidate/NAME).")
@click.option("--no-localise", "no_localise", is_flag=True,
              help="On a mismatch, do not search for the first diverging shared tensor.")
@output_options
@_guard
def validate(original, candidate, runtime, provider, require_cuda, ort_opt, input_shapes, inputs_npz, seed, val_range,
             trials, atol, rtol, save_inputs, save_outputs, no_localise, as_json, quiet):
    """Compare CANDIDATE with ORIGINAL, output by output, on the same inputs.

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
    for path in (original, candidate):
        _require_model_file(path)
    options = _verify_options(runtime, provider, require_cuda, input_shapes, inputs_npz, seed, val_range,
                              trials, atol, rtol, optimize=ort_opt, keep_outputs=bool(save_outputs))
    from .verify import load_for_comparison, save_repro_inputs, save_repro_outputs, validate_models

    p = _Printer(as_json, quiet)
    for path in (save_inputs, save_outputs):
        if path:
            _check_output_path(path)
    p.progress(f"loading {original}")
    ref = load_for_comparison(original, "the original model")
    p.progress(f"loading {candidate}")
    cand = load_for_comparison(candidate, "the candidate model")
    result = validate_models(ref, cand, options, progress=p.progress, localise=not no_localise)
    del ref, cand
    p.done_progress()
    p.info(f"Validating {candidate} against {original}")
    p.info(result.format_text(show_worst=True, verdict=False))
    saved = {}
    if save_inputs:
        trial = save_repro_inputs(result, save_inputs)
        saved["inputs"] = save_inputs
        p.info(f"saved the inputs of trial {trial + 1} to {save_inputs} (replay: --inputs {save_inputs})")
    if save_outputs:
        trial = save_repro_outputs(result, save_outputs)
        if trial is None:
            p.info(f"no outputs to save to {save_outputs}")
        else:
            saved["outputs"] = save_outputs
            whose = "both models'" if result.outputs_cand else "the original's"
            p.info(f"saved {whose} outputs of trial {trial + 1} to {save_outputs}")
    if as_json:
        p.json({"original": original, "candidate": candidate, "saved": saved, **result.to_dict()})
    line = _validate_line(result)
    if result.trials and not result.candidate_error:
        for text in result.criterion_lines():  # what PASSED/FAILED means, with the values applied
            p.info(text)
    p.final(line)
    if not result.passed:
        err = VerificationError(line)
        err.reported = True
        raise err


def _validate_line(result) -> str:
    if result.candidate_error:
        return f"FAILED: {result.candidate_error}"
    abs_e, rel_e = result.max_errors()
    total = {o.name for t in result.trials for o in t.comparison.outputs}
    total |= {n for t in result.trials for n in t.comparison.unpaired_ref + t.comparison.unpaired_cand}
    if result.passed:
        return f"PASSED: all {len(total)} output(s) match (max abs err {abs_e:.3g}, max rel err {rel_e:.3g})"
    failing = result.failing_outputs()
    text = (f"FAILED: {len(failing)} of {len(total)} output(s) differ ("
            + ", ".join(f"'{n}'" for n in failing[:3]) + (", ..." if len(failing) > 3 else "") + ")")
    loc = result.localisation
    if loc is not None and loc.first is not None:
        text += f"; diverges first at '{loc.first.tensor}' (node '{loc.first.original_node}')"
    return text


def _check_output_path(path: str) -> None:
    from .errors import OutputError

    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise OutputError(f"{path} is a directory; give a file name")
    if not os.path.isdir(os.path.dirname(full)):
        raise OutputError(f"cannot write {path}: folder {os.path.dirname(full)} does not exist")


@main.command("inspect")
@click.argument("model", type=click.Path(dir_okay=True))
@input_shape_option
@emission_options
@output_options
@_guard
def inspect_cmd(model, input_shapes, shuffle, order, strategy, target, as_json, quiet):
    """List every ConvTranspose of MODEL and what convert would make of it.

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
    _require_model_file(model)
    from .inputs import parse_input_shapes
    from .inspection import inspect_model
    from .model_io import load_model
    from .rewrite.options import ConvertOptions

    p = _Printer(as_json, quiet)
    shapes = parse_input_shapes(input_shapes)
    p.progress(f"loading {model}")
    proto = load_model(model)
    report = inspect_model(proto, ConvertOptions(shuffle=shuffle, order=order, strategy=strategy,
                                                 target=target), shapes, path=model,
                           progress=p.progress)
    del proto
    p.done_progress()
    p.info(report.format_text())
    if as_json:
        p.json(report.to_dict())
    else:
        p.final(report.summary())


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.argument("candidate", type=click.Path(dir_okay=True), required=False)
@runtime_options
@input_data_options
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Untimed runs per model.")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True, help="Timed runs per model.")
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="Intra-op threads (default: the runtime's choice).")
@click.option("--no-interleave", is_flag=True, help="Time the models one after the other instead of alternating.")
@emission_options
@output_options
@_guard
def bench(model, candidate, runtime, provider, require_cuda, input_shapes, inputs_npz, seed, val_range, warmup, runs,
          threads, no_interleave, shuffle, order, strategy, target, as_json, quiet):
    """Time MODEL against CANDIDATE (default: MODEL converted in memory).

    Both run on the chosen runtime and provider with graph optimisations on, as deployed, on the
    same seeded inputs: warm-up, then timed runs alternating between the models so that drift hits
    both. Reports median, p90, min and mean latency and the speedup (median MODEL / median
    CANDIDATE; above 1 means the candidate is faster).

    \b
    Example:
      deconv2sub bench samples/dcgan_generator.onnx
      deconv2sub bench model.onnx model_subpixel.onnx --input-shape x:1,3,512,512
      deconv2sub bench model.onnx --runs 100 --warmup 10 --threads 4
      deconv2sub bench model.onnx --provider cuda --json
    """
    for path in (model, candidate) if candidate else (model,):
        _require_model_file(path)
    from .api import convert_model
    from .bench import bench_models
    from .inputs import load_npz, make_feeds, model_input_specs, parse_input_shapes, resolve_shapes
    from .model_io import load_model
    from .rewrite.options import ConvertOptions

    p = _Printer(as_json, quiet)
    if require_cuda and provider == "cpu":
        raise InputError("--require-cuda contradicts --provider cpu")
    shapes = parse_input_shapes(input_shapes)
    p.progress(f"loading {model}")
    original = load_model(model)
    conversion = None
    if candidate:
        p.progress(f"loading {candidate}")
        other = load_model(candidate)
        source = candidate
    else:
        p.progress("converting in memory")
        other, conversion = convert_model(original, ConvertOptions(shuffle=shuffle, order=order, strategy=strategy,
                                                                   tune_runtime=runtime, tune_provider=provider,
                                                                   target=target,
                                                                   input_shapes=shapes))
        source = f"{model}, converted in memory"
    specs = model_input_specs(original)
    if inputs_npz:
        if not os.path.isfile(inputs_npz):
            raise InputError(f"{inputs_npz}: no such file")
        feeds = load_npz(inputs_npz, specs)
    else:
        feeds = make_feeds(specs, resolve_shapes(specs, shapes), seed=seed, val_range=val_range)
    result = bench_models({"original": original, "candidate": other}, feeds, runtime=runtime,
                          provider="cuda" if require_cuda else provider, require_cuda=require_cuda,
                          warmup=warmup, runs=runs, threads=threads or None, interleave=not no_interleave,
                          progress=p.progress)
    p.done_progress()
    sources = {"original": model, "candidate": source}
    p.info(_format_bench(result, sources, conversion))
    if as_json:
        data = result.to_dict()
        data["sources"] = sources
        data["conversion"] = None if conversion is None else conversion.to_dict()
        p.json(data)
    p.final(_bench_line(result))


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4f}" if ms < 1 else f"{ms:.3f}" if ms < 100 else f"{ms:.1f}"


def _format_bench(result, sources, conversion, width: int = 80) -> str:
    import textwrap

    def wrap(text: str) -> List[str]:
        return textwrap.wrap(text, width, subsequent_indent="    ", break_on_hyphens=False)

    first = next(iter(result.results.values()))
    lines = wrap(f"Benchmark on {result.runtime.describe()}; graph optimisations "
                 f"{'on' if result.optimize else 'off'}")
    shapes = ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in result.input_shapes.items())
    how = "interleaved" if result.interleave else "one model after the other"
    threads = "runtime default" if not result.threads else str(result.threads)
    lines += wrap(f"inputs {shapes}; {first.warmup} warm-up + {len(first.times)} timed runs per model, {how}; "
                  f"threads: {threads}")
    for label, src in sources.items():
        lines += wrap(f"{label}: {src}")
    if conversion is not None:
        lines += wrap(f"  {conversion.summary()}")
    lines += [f"{'model':<14}{'median ms':>12}{'p90 ms':>12}{'min ms':>12}{'mean ms':>12}", "-" * 62]
    for label, r in result.results.items():
        lines.append(f"{label:<14}{_ms(r.median):>12}{_ms(r.p90):>12}{_ms(r.min):>12}{_ms(r.mean):>12}")
    lines.append("-" * 62)
    return "\n".join(lines)


def _bench_line(result) -> str:
    ratio = result.speedup("original", "candidate")
    verdict = "faster" if ratio > 1 else "slower" if ratio < 1 else "as fast"
    o, c = result.results["original"], result.results["candidate"]
    return (f"speedup {ratio:.2f}x: candidate {verdict} (median {_ms(o.median)} -> {_ms(c.median)} ms, "
            f"{result.runtime.runtime} {result.runtime.device})")


if __name__ == "__main__":  # pragma: no cover
    main()
