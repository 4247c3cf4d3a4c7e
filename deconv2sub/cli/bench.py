"""``deconv2sub bench``: time a model against its conversion (or another model)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import List, Optional

import click

from .groups import ConvertArgs, InputArgs, ModelArgs, OutputFormatArgs, RuntimeArgs, group
from .terminal import Printer, guarded

__all__ = ["bench"]


@dataclass(frozen=True)
class TimingArgs:
    """``--warmup``, ``--runs``, ``--threads``, ``--no-interleave``."""

    warmup: int = 5
    runs: int = 20
    threads: Optional[int] = None
    interleave: bool = True

    @classmethod
    def options(cls):
        """The options, as ``timing``."""
        return group("timing", cls.parse, [
            click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
                         help="Untimed runs per model."),
            click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True,
                         help="Timed runs per model."),
            click.option("--threads", type=click.IntRange(min=0), default=None,
                         help="Intra-op threads (default: the runtime's choice)."),
            click.option("--no-interleave", is_flag=True,
                         help="Time the models one after the other instead of alternating."),
        ])

    @classmethod
    def parse(cls, warmup: int, runs: int, threads: Optional[int],
              no_interleave: bool) -> "TimingArgs":
        """``--threads 0`` means the runtime's choice, like no ``--threads``."""
        return cls(warmup, runs, threads or None, not no_interleave)

HELP = """Time MODEL against CANDIDATE (default: MODEL converted in memory).

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


@click.command(help=HELP)
@guarded
@ModelArgs.argument("model")
@ModelArgs.argument("candidate", required=False)
@RuntimeArgs.options()
@InputArgs.options(trials=False)
@TimingArgs.options()
@ConvertArgs.options()
@OutputFormatArgs.options()
def bench(model: ModelArgs, candidate: Optional[ModelArgs], runtime: RuntimeArgs,
          inputs: InputArgs, timing: TimingArgs, conversion: ConvertArgs,
          fmt: OutputFormatArgs) -> None:
    """The ``bench`` command; its ``--help`` is :data:`HELP`."""
    from ..api import convert_model
    from ..io.load import load_model
    from ..runtime.timing import bench_models
    from ..verify.inputs import load_npz, make_feeds, model_input_specs, resolve_shapes

    p = Printer(fmt)
    p.progress(f"loading {model.path}")
    original = load_model(model.path)
    conversion_report = None
    if candidate is not None:
        p.progress(f"loading {candidate.path}")
        other = load_model(candidate.path)
        source = candidate.path
    else:
        p.progress("converting in memory")
        other, conversion_report = convert_model(
            original, conversion.convert_options(runtime, input_shapes=inputs.shapes))
        source = f"{model.path}, converted in memory"
    specs = model_input_specs(original)
    if inputs.npz:
        feeds = load_npz(inputs.npz, specs)
    else:
        feeds = make_feeds(specs, resolve_shapes(specs, inputs.shapes), seed=inputs.seed,
                           val_range=inputs.val_range)
    result = bench_models({"original": original, "candidate": other}, feeds,
                          runtime=runtime.runtime, provider=runtime.device_provider,
                          require_cuda=runtime.require_cuda, warmup=timing.warmup,
                          runs=timing.runs, threads=timing.threads, interleave=timing.interleave,
                          progress=p.progress)
    p.done_progress()
    sources = {"original": model.path, "candidate": source}
    p.info(format_table(result, sources, conversion_report))
    if fmt.as_json:
        data = result.to_dict()
        data["sources"] = sources
        data["conversion"] = None if conversion_report is None else conversion_report.to_dict()
        p.json(data)
    p.final(speedup_line(result))


def ms(seconds: float) -> str:
    """Milliseconds with 4 significant-ish digits."""
    value = seconds * 1e3
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 100 else f"{value:.1f}"


def format_table(result, sources, conversion, width: int = 80) -> str:
    """The setting (runtime, inputs, runs, sources) and one row of latencies per model."""

    def wrap(text: str) -> List[str]:
        return textwrap.wrap(text, width, subsequent_indent="    ", break_on_hyphens=False)

    first = next(iter(result.results.values()))
    lines = wrap(f"Benchmark on {result.runtime.describe()}; graph optimisations "
                 f"{'on' if result.optimize else 'off'}")
    shapes = ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in result.input_shapes.items())
    how = "interleaved" if result.interleave else "one model after the other"
    threads = "runtime default" if not result.threads else str(result.threads)
    lines += wrap(f"inputs {shapes}; {first.warmup} warm-up + {len(first.times)} timed runs per "
                  f"model, {how}; threads: {threads}")
    for label, src in sources.items():
        lines += wrap(f"{label}: {src}")
    if conversion is not None:
        lines += wrap(f"  {conversion.summary()}")
    lines += [f"{'model':<14}{'median ms':>12}{'p90 ms':>12}{'min ms':>12}{'mean ms':>12}",
              "-" * 62]
    for label, r in result.results.items():
        lines.append(f"{label:<14}{ms(r.median):>12}{ms(r.p90):>12}{ms(r.min):>12}"
                     f"{ms(r.mean):>12}")
    lines.append("-" * 62)
    return "\n".join(lines)


def speedup_line(result) -> str:
    """The final line: the speedup and both medians."""
    ratio = result.speedup("original", "candidate")
    verdict = "faster" if ratio > 1 else "slower" if ratio < 1 else "as fast"
    o, c = result.results["original"], result.results["candidate"]
    return (f"speedup {ratio:.2f}x: candidate {verdict} (median {ms(o.median)} -> "
            f"{ms(c.median)} ms, {result.runtime.runtime} {result.runtime.device})")
