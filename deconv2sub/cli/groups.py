"""The command line's argument groups (Polygraphy's pattern, in click).

Each group owns its options: ``Group.options(...)`` is a decorator that adds them to a command and,
when the command runs, replaces their values by one parsed, validated instance of the group (a
small dataclass) passed under one parameter name. So a command receives ``model``, ``runtime``,
``verify``, ... instead of each option's value, and every check (contradictions, ranges, files)
happens once, here.

Groups are parsed in the order of their decorators, top first. Put :class:`ModelArgs` on top: a
missing model is then reported before any heavy module (onnx, numpy) is imported, and ``--help``
never imports one (``tests/cli/test_cli_startup.py``).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import click

from .. import names
from ..errors import InputError
from ..io.paths import check_output_path

__all__ = [
    "ConvertArgs",
    "InputArgs",
    "ModelArgs",
    "OutputArgs",
    "OutputFormatArgs",
    "RuntimeArgs",
    "VerifyArgs",
    "group",
]

Decorator = Callable[[Callable], Callable]


def group(param: str, parse: Callable[..., Any], decorators: Sequence[Decorator]) -> Decorator:
    """Add ``decorators`` (click options, arguments; in ``--help``'s order) to a command.

    When the command runs, their values are taken out of its keyword arguments and replaced by
    ``parse(**values)`` under the name ``param``.
    """

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in own}
            kwargs[param] = parse(**values)
            return f(*args, **kwargs)

        # click collects a command's parameters in __click_params__; functools.wraps shares f's
        # list, so copy it before adding ours, then read back which ones are ours.
        wrapper.__click_params__ = list(getattr(f, "__click_params__", []))
        before = len(wrapper.__click_params__)
        for decorator in reversed(decorators):  # click shows the last one applied first
            decorator(wrapper)
        own = [p.name for p in wrapper.__click_params__[before:]]
        return wrapper

    return decorate


# ---- the model(s) a command reads ----------------------------------------------------------------
@dataclass(frozen=True)
class ModelArgs:
    """A model path given on the command line; it exists (what else is wrong is found on load)."""

    path: str

    @classmethod
    def argument(cls, name: str, required: bool = True) -> Decorator:
        """The positional argument ``name`` (None when optional and absent)."""
        return group(name, cls.parse, [
            click.argument(name, type=click.Path(dir_okay=True), required=required)])

    @classmethod
    def parse(cls, **values: Optional[str]) -> Optional["ModelArgs"]:
        """Fail fast on a missing model, before onnx and onnxruntime are imported."""
        (path,) = values.values()
        if path is None:
            return None
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        return cls(path)


# ---- where convert writes ------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputArgs:
    """``-o``, ``--force``, ``--external-data``: where and how ``convert`` saves."""

    path: Optional[str] = None
    force: bool = False
    external_data: Optional[bool] = None

    @classmethod
    def options(cls) -> Decorator:
        """The options, as ``output``."""
        return group("output", cls.parse, [
            click.option("-o", "--output", type=click.Path(), default=None,
                         help="Where to save the rewritten model [default: MODEL_subpixel.onnx "
                              "beside MODEL]."),
            click.option("--force", is_flag=True,
                         help="Overwrite OUTPUT if it exists (never the input)."),
            click.option("--external-data/--no-external-data", default=None,
                         help="Save weights in OUTPUT.data beside the model (default: like the "
                              "input, or when > 1.8 GB)."),
        ])

    @classmethod
    def parse(cls, output: Optional[str], force: bool,
              external_data: Optional[bool]) -> "OutputArgs":
        """Store the values; the path is checked against the model in :meth:`resolve`."""
        return cls(output, force, external_data)

    def resolve(self, model: str, default: Callable[[str], str]) -> str:
        """The output path for ``model`` (``default(model)`` when none was given), checked."""
        path = self.path or default(model)
        # force: an existing output is refused later, after checking it is no file of the input
        check_output_path(path, force=True, protect=[model], what="the output model")
        return path


# ---- how the rewrite is done ---------------------------------------------------------------------
def _target_names() -> Tuple[str, ...]:
    from ..targets import TARGET_NAMES  # profiles as data: no heavy import

    return TARGET_NAMES


def _target_profile(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    """``--target``: a built-in name or a TOML file, resolved once into a TargetProfile."""
    from ..targets import ProfileError, resolve

    try:
        return resolve(value)
    except ProfileError as err:
        raise click.BadParameter(str(err)) from None


def _toolchain_names(ctx: click.Context, param: click.Parameter, value: Tuple[str, ...]):
    """``--toolchain``: names with known bugs recorded."""
    from ..targets import ALL_BUGS
    from ..targets.bugs import toolchains_with_bugs

    known = toolchains_with_bugs(ALL_BUGS)
    bad = [v for v in value if v not in known]
    if bad:
        raise click.BadParameter(f"no known bugs recorded for {', '.join(bad)} "
                                 f"(known: {', '.join(known)})")
    return tuple(value)


@dataclass(frozen=True)
class ConvertArgs:
    """``--target``, ``--strategy``, ``--order``, ``--shuffle`` (``convert``: ``--toolchain``)."""

    target: Any = "portable"  # the resolved TargetProfile
    strategy: str = "default"
    order: str = "auto"
    shuffle: str = "auto"
    toolchains: Tuple[str, ...] = ()

    @classmethod
    def options(cls, toolchains: bool = False) -> Decorator:
        """The options, as ``conversion``; ``toolchains``: with ``--toolchain``."""
        decorators = [
            click.option("--target", default="portable", show_default=True,
                         callback=_target_profile, metavar="NAME|FILE.toml",
                         help="Deployment target: what the rewrite may emit and prefers. Built "
                              "in: " + ", ".join(_target_names())
                              + "; or a TOML profile file (see README)."),
            click.option("--strategy", type=click.Choice(names.STRATEGIES), default="default",
                         show_default=True,
                         help="Emission: default (the --target profile's choice), auto (time the "
                              "candidates per node on --runtime/--provider, cached), or a fixed "
                              "one for reproducible output. --shuffle/--order apply to "
                              "depth_to_space."),
            click.option("--order", type=click.Choice(["auto", "CRD", "DCR"]), default="auto",
                         show_default=True, help="Channel order of the low-resolution Conv."),
            click.option("--shuffle", type=click.Choice(["auto", "reshape"]), default="auto",
                         show_default=True,
                         help="auto: DepthToSpace where it can express the shuffle; reshape: "
                              "always Reshape/Transpose."),
        ]
        if toolchains:
            decorators.append(click.option(
                "--toolchain", "toolchains", multiple=True, callback=_toolchain_names,
                metavar="NAME",
                help="Warn when the output hits a known bug of this deployment toolchain "
                     "(repeatable)."))
        return group("conversion", cls.parse, decorators)

    @classmethod
    def parse(cls, **values: Any) -> "ConvertArgs":
        """The values, already checked by their callbacks."""
        return cls(**values)

    def convert_options(self, runtime: Optional["RuntimeArgs"] = None,
                        input_shapes: Optional[Dict[str, Tuple[int, ...]]] = None):
        """The :class:`~deconv2sub.rewrite.options.ConvertOptions` of every command.

        ``--strategy auto`` measures on ``runtime`` (its in-process runtime; ONNX Runtime on CPU
        without one) at ``input_shapes``.
        """
        from ..rewrite.options import ConvertOptions

        tune = {} if runtime is None else {"tune_runtime": runtime.tune_runtime,
                                           "tune_provider": runtime.provider}
        return ConvertOptions(shuffle=self.shuffle, order=self.order, strategy=self.strategy,
                              target=self.target, toolchains=self.toolchains,
                              input_shapes=dict(input_shapes or {}), **tune)


# ---- where models run ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimeArgs:
    """``--runtime``, ``--provider``, ``--require-cuda``."""

    runtime: str = "onnxruntime"
    provider: str = "auto"  # as given
    require_cuda: bool = False

    @classmethod
    def options(cls) -> Decorator:
        """The options, as ``runtime``."""
        toolchains = ", ".join(names.TOOLCHAINS)
        return group("runtime", cls.parse, [
            click.option("--require-cuda", is_flag=True,
                         help="Fail (exit 3) instead of falling back to CPU."),
            click.option("--provider", type=click.Choice(["auto", "cuda", "cpu"]), default="auto",
                         show_default=True,
                         help="Execution provider: auto = CUDA when it truly works, else CPU "
                              "(always reported)."),
            click.option("--runtime", type=click.Choice(names.RUNTIMES), default="onnxruntime",
                         show_default=True,
                         help="Runtime that runs the models. A deployment toolchain "
                              f"({toolchains}; installed separately) converts the candidate "
                              "with its own converter and runs it; the original then runs on "
                              "onnxruntime."),
        ])

    @classmethod
    def parse(cls, require_cuda: bool, provider: str, runtime: str) -> "RuntimeArgs":
        """Refuse ``--require-cuda`` with ``--provider cpu``."""
        if require_cuda and provider == "cpu":
            raise InputError("--require-cuda contradicts --provider cpu")
        return cls(runtime, provider, require_cuda)

    @property
    def device_provider(self) -> str:
        """The provider the models run on: ``cuda`` when CUDA is required."""
        return "cuda" if self.require_cuda else self.provider

    @property
    def tune_runtime(self) -> str:
        """Where ``--strategy auto`` measures: the runtime if it runs here, else ONNX Runtime."""
        return self.runtime if self.runtime in names.IN_PROCESS_RUNTIMES else "onnxruntime"


# ---- the inputs models run on --------------------------------------------------------------------
@dataclass(frozen=True)
class InputArgs:
    """``--input-shape`` (and ``--inputs``, ``--seed``, ``--val-range``, ``--trials``)."""

    shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    npz: Optional[str] = None
    seed: int = 0
    val_range: Optional[Tuple[float, float]] = None
    trials: Optional[int] = None

    @classmethod
    def options(cls, data: bool = True, trials: bool = True) -> Decorator:
        """The options, as ``inputs``; ``data``, ``trials``: with the data options, ``--trials``."""
        decorators = []
        if trials:
            decorators.append(click.option(
                "--trials", type=click.IntRange(min=1), default=None,
                help="Input sets to compare, trial i with seed+i (and another size for symbolic "
                     "dims) [default: 2 when dims are symbolic, else 1]."))
        if data:
            decorators += [
                click.option("--val-range", type=(float, float), default=None, metavar="LOW HIGH",
                             help="Range of random input values (default: N(0,1) floats, [0,4) "
                                  "integers)."),
                click.option("--seed", type=int, default=0, show_default=True,
                             help="Seed of the random inputs."),
                click.option("--inputs", "inputs_npz", type=click.Path(dir_okay=False),
                             default=None,
                             help="Feed real data from an .npz file (one array per input name)."),
            ]
        decorators.append(click.option(
            "--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...",
            help="Shape for an input with symbolic dims (repeatable), e.g. x:1,3,224,224."))
        return group("inputs", cls.parse, decorators)

    @classmethod
    def parse(cls, input_shapes: Sequence[str], inputs_npz: Optional[str] = None, seed: int = 0,
              val_range: Optional[Tuple[float, float]] = None,
              trials: Optional[int] = None) -> "InputArgs":
        """Parse the shapes (every dim >= 1); the ``--inputs`` file must exist."""
        if inputs_npz and not os.path.isfile(inputs_npz):
            raise InputError(f"{inputs_npz}: no such file")
        from ..verify.inputs import parse_input_shapes  # numpy: after the model was found

        return cls(parse_input_shapes(input_shapes), inputs_npz, seed, val_range, trials)


# ---- how outputs are compared --------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyArgs:
    """``--ort-opt``, ``--rtol``, ``--atol`` (and ``convert``'s ``--no-verify``)."""

    verify: bool = True
    optimize: bool = False
    rtol: Optional[float] = None
    atol: Optional[float] = None

    @classmethod
    def options(cls, skip: bool = False) -> Decorator:
        """The options, as ``verify``; ``skip``: with ``--no-verify``."""
        decorators = []
        if skip:
            decorators.append(click.option(
                "--no-verify", is_flag=True, help="Skip the numerical check against the original."))
        decorators += [
            click.option("--ort-opt", is_flag=True,
                         help="Turn ONNX Runtime graph optimisations on for the comparison (off "
                              "by default, so that the graphs compared are the graphs on disk)."),
            click.option("--rtol", type=float, default=None,
                         help="Relative tolerance (default per dtype; float32 1e-4)."),
            click.option("--atol", type=float, default=None,
                         help="Absolute tolerance (default per dtype; float32 1e-5)."),
        ]
        return group("verify", cls.parse, decorators)

    @classmethod
    def parse(cls, ort_opt: bool, rtol: Optional[float], atol: Optional[float],
              no_verify: bool = False) -> "VerifyArgs":
        """Refuse a tolerance that makes the check meaningless.

        A negative one fails every element (so verification would blame every rewritten node),
        NaN compares false with everything, and an infinite one passes anything.
        """
        for name, value in (("--atol", atol), ("--rtol", rtol)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InputError(f"bad {name} {value:g}: a tolerance must be a finite number >= 0")
        return cls(not no_verify, ort_opt, rtol, atol)

    def verify_options(self, runtime: RuntimeArgs, inputs: InputArgs, keep_outputs: bool = False):
        """The :class:`~deconv2sub.verify.verification.VerifyOptions` of convert and validate."""
        from ..verify.options import VerifyOptions

        return VerifyOptions(runtime=runtime.runtime, provider=runtime.device_provider,
                             require_cuda=runtime.require_cuda, optimize=self.optimize,
                             rtol=self.rtol, atol=self.atol, seed=inputs.seed,
                             val_range=inputs.val_range, input_shapes=dict(inputs.shapes),
                             inputs_npz=inputs.npz, trials=inputs.trials,
                             keep_outputs=keep_outputs)


# ---- how results are printed ---------------------------------------------------------------------
@dataclass(frozen=True)
class OutputFormatArgs:
    """``--json``, ``--quiet``."""

    as_json: bool = False
    quiet: bool = False

    @classmethod
    def options(cls) -> Decorator:
        """The options, as ``fmt``."""
        return group("fmt", cls.parse, [
            click.option("-q", "--quiet", is_flag=True,
                         help="Only print errors and the final line."),
            click.option("--json", "as_json", is_flag=True,
                         help="Print a machine-readable JSON report on stdout."),
        ])

    @classmethod
    def parse(cls, quiet: bool, as_json: bool) -> "OutputFormatArgs":
        """The two flags."""
        return cls(as_json, quiet)
