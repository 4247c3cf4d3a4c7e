"""Target profiles: what a deployment target runs and prefers, as data.

A :class:`TargetProfile` says which operators the rewrite may emit for a target (DepthToSpace and in
which modes, the largest block size, the largest rank of a Reshape/Transpose, Gather, Gemm, phase
Convs joined by a Concat, run-time shape arithmetic), for which strides the target would rather keep
its ConvTranspose, which speed rule chooses among the allowed emissions, and the toolchain bugs
known to hit some emitted forms (so that ``convert`` can warn). Built-in profiles live in
:mod:`deconv2sub.targets.builtin`; users add their own from a TOML file with the same field names::

    # my_npu.toml
    name = "my_npu"
    description = "our NPU compiler 3.2"
    depth_to_space = ["DCR"]      # allowed modes, preferred first; [] = no DepthToSpace
    max_block = 2                 # largest DepthToSpace block size; 0 = any
    max_rank = 4                  # largest Reshape/Transpose rank
    keep_strides = [[1, 1]]       # strides whose ConvTranspose stays (the target runs them well)
    keep_when = ["grouped"]       # node facts for which the ConvTranspose stays (see NODE_FACTS)

    [[bugs]]
    toolchain = "my_npu"
    op = "DepthToSpace"
    mode = "CRD"
    note = "wrong results in compiler 3.1"

Nothing here imports onnx: a profile is plain data, checked once when it is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Optional, Tuple, Union

RULES = ("portable", "onnxruntime", "openvino")
D2S_MODES = ("CRD", "DCR")
#: facts about one ConvTranspose that a profile's ``keep_when`` and ``fold_crop_always_when`` may
#: name (evaluated by the chooser, :mod:`deconv2sub.targets.chooser`), with what they say in the
#: report
NODE_FACTS = {
    "grouped": "grouped ConvTranspose (group > 1: the rewrite's grouped Conv has a channel "
    "multiplier)",
    "kernel2_wide": "the rewrite's Conv would be 2x2 with 32 or more input channels on a padded "
    "input of 32 or more (the Conv of the conv_kernel2_wide bug)",
}


class ProfileError(ValueError):
    """A profile (built-in or from a TOML file) is malformed; ``str()`` is the one-line reason."""


@dataclass(frozen=True)
class KnownBug:
    """A toolchain bug that an emitted form can hit.

    ``op`` is the ONNX operator; the other fields narrow it down: ``mode`` (DepthToSpace's mode),
    ``min_rank`` (the op's input rank at least this), ``condition`` (a named predicate of
    :mod:`deconv2sub.targets.bugs`, e.g. ``"d2s_channels_ne_block"``: C / b^2 != b), ``axis``
    (Gather's axis, when not None: only that axis). ``note`` says what goes wrong, ``reference``
    where it is tracked.
    """

    toolchain: str
    op: str
    note: str
    mode: Optional[str] = None
    min_rank: int = 0
    condition: Optional[str] = None
    axis: Optional[int] = None
    reference: str = ""


@dataclass(frozen=True)
class TargetProfile:
    """What one deployment target runs (see the module docstring)."""

    name: str
    description: str = ""
    #: where the facts come from (a measurement here, or the vendor's published limits)
    source: str = ""
    #: DepthToSpace modes the target runs, preferred first; () = no DepthToSpace at all
    depth_to_space: Tuple[str, ...] = ("CRD", "DCR")
    #: the largest DepthToSpace block size (0: any); bigger strides become a cascade of smaller
    #: blocks
    max_block: int = 0
    #: the largest rank of an emitted Reshape/Transpose (1-D, 3-D and unequal strides are cascaded
    #: into transposes of at most this rank)
    max_rank: int = 4
    gather: bool = False
    gemm: bool = False
    #: phase Convs joined by a Concat (one Conv per group of phases, without zero taps)
    phase_convs: bool = False
    #: run-time shape arithmetic (Shape/Gather/Mul/Concat feeding a Reshape or Slice) where the
    #: model's sizes are symbolic; without it only the constant 0/-1 forms of Reshape are used
    dynamic_shapes: bool = True
    #: fold the begin crop into the phase choice where it costs no tap (fewer Slices)
    #: (``"always"``: also where the folded kernel grows, e.g. DCGAN's k4 s2 p1 becomes a 3x3 Conv
    #: without a Slice: more MACs, for targets whose 2x2 Conv or Slice is the problem)
    fold_crop: Union[bool, str] = True
    #: strides for which the ConvTranspose stays as it is (the node is reported as kept, with the
    #: reason)
    keep_strides: Tuple[Tuple[int, ...], ...] = ()
    #: spatial ranks (1, 2, 3) whose ConvTranspose stays (e.g. ncnn's native 3-D deconvolution,
    #: where no rank-limited shuffle converts)
    keep_ranks: Tuple[int, ...] = ()
    #: facts (names of :data:`NODE_FACTS`) for which the ConvTranspose stays, e.g. ``"grouped"``
    #: for a target that splits a grouped Conv with a channel multiplier into one Conv per group
    keep_when: Tuple[str, ...] = ()
    #: facts (names of :data:`NODE_FACTS`) for which a 2-D DepthToSpace node folds its crop into
    #: the kernel even where the kernel grows (``fold_crop = "always"`` for that node only), e.g.
    #: ``"kernel2_wide"``: a 3x3 Conv instead of the 2x2 one that MNN computes inexactly
    fold_crop_always_when: Tuple[str, ...] = ()
    #: 3-D with equal H and W strides as Conv3d + one rank-4 Reshape/Transpose + DepthToSpace(CRD)
    #: (emission ``depth_to_space_3d``, where "CRD" is in ``depth_to_space``): the one 3-D form
    #: pnnx/ncnn converts; false (the default): the rank-4 block-swap cascade, which LiteRT, MNN
    #: (1.6x faster there) and IREE (no CRD) run and ncnn rejects
    depth_to_space_3d: bool = False
    #: the speed rule that chooses among the allowed emissions: "portable" (Conv + DepthToSpace, or
    #: low-rank Reshape/Transpose), or the measured CPU rules "onnxruntime" / "openvino"
    rule: str = "portable"
    bugs: Tuple[KnownBug, ...] = ()

    def __post_init__(self):
        """Check every field; raise ProfileError listing all the problems."""
        problems = []
        if not self.name or not isinstance(self.name, str):
            problems.append("a profile needs a name")
        bad = [m for m in self.depth_to_space if m not in D2S_MODES]
        if bad:
            problems.append(f"depth_to_space modes {bad} (choose from {', '.join(D2S_MODES)})")
        if not isinstance(self.max_block, int) or self.max_block < 0 or self.max_block == 1:
            problems.append(f"max_block {self.max_block!r} (0 for any, else >= 2)")
        if not isinstance(self.max_rank, int) or self.max_rank < 3:
            problems.append(f"max_rank {self.max_rank!r} (at least 3: [outer, phase, size])")
        if self.rule not in RULES:
            problems.append(f"rule {self.rule!r} (choose from {', '.join(RULES)})")
        for s in self.keep_strides:
            if not s or any((not isinstance(v, int)) or v < 1 for v in s):
                problems.append(
                    f"keep_strides entry {list(s)!r} (positive integers per spatial axis)"
                )
        for key in ("keep_when", "fold_crop_always_when"):
            bad = [f for f in getattr(self, key) if f not in NODE_FACTS]
            if bad:
                problems.append(f"{key} facts {bad} (choose from {', '.join(NODE_FACTS)})")
        if problems:
            raise ProfileError(f"target profile {self.name!r}: bad " + "; bad ".join(problems))

    def keeps(self, strides) -> Optional[str]:
        """Why a ConvTranspose with these strides stays (keep_strides, keep_ranks), or None."""
        strides = tuple(int(s) for s in strides)
        if any(tuple(k) == strides for k in self.keep_strides):
            return f"target '{self.name}' keeps ConvTranspose for strides {list(strides)}"
        if len(strides) in self.keep_ranks:
            return (
                f"target '{self.name}' keeps {len(strides)}-D ConvTranspose (it runs them natively "
                "and cannot run their rewrite)"
            )
        return None

    def bugs_for(self, toolchain: str):
        """The known bugs of ``toolchain``."""
        return [b for b in self.bugs if b.toolchain == toolchain]

    def to_dict(self) -> dict:
        """The profile as a JSON/TOML-ready dict."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["bugs"] = [b.__dict__.copy() for b in self.bugs]
        out["depth_to_space"] = list(self.depth_to_space)
        out["keep_strides"] = [list(s) for s in self.keep_strides]
        out["keep_when"] = list(self.keep_when)
        out["fold_crop_always_when"] = list(self.fold_crop_always_when)
        return out


def profile_from_dict(data: dict, origin: str) -> TargetProfile:
    """A profile from plain data (a parsed TOML file); unknown keys and wrong types are errors."""
    known = {f.name for f in fields(TargetProfile)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProfileError(
            f"{origin}: unknown profile key(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    values = dict(data)
    try:
        if "depth_to_space" in values:
            values["depth_to_space"] = tuple(str(m).upper() for m in values["depth_to_space"])
        if "keep_ranks" in values:
            values["keep_ranks"] = tuple(int(r) for r in values["keep_ranks"])
        if "keep_strides" in values:
            values["keep_strides"] = tuple(tuple(s) for s in values["keep_strides"])
        for key in ("keep_when", "fold_crop_always_when"):
            if key in values:
                values[key] = tuple(str(f) for f in values[key])
        if "bugs" in values:
            bug_keys = {f.name for f in fields(KnownBug)}
            bugs = []
            for b in values["bugs"]:
                extra = sorted(set(b) - bug_keys)
                if extra:
                    raise ProfileError(f"{origin}: unknown bug key(s) {', '.join(extra)}")
                bugs.append(KnownBug(**b))
            values["bugs"] = tuple(bugs)
    except TypeError as e:
        raise ProfileError(f"{origin}: {e}") from None
    if "fold_crop" in values and values["fold_crop"] not in (True, False, "always"):
        raise ProfileError(
            f'{origin}: fold_crop must be true, false or "always", not {values["fold_crop"]!r}'
        )
    for key in ("gather", "gemm", "phase_convs", "dynamic_shapes", "depth_to_space_3d"):
        if key in values and not isinstance(values[key], bool):
            raise ProfileError(f"{origin}: {key} must be true or false, not {values[key]!r}")
    values.setdefault("name", os.path.splitext(os.path.basename(origin))[0])
    values.setdefault("source", origin)
    return TargetProfile(**values)


def load_profile_file(path: str) -> TargetProfile:
    """Read a TOML profile (see the module docstring)."""
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - older Pythons
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such target profile file") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the target profile: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not a valid TOML file: {e}") from None
    return profile_from_dict(data, path)


__all__ = [
    "KnownBug",
    "TargetProfile",
    "ProfileError",
    "RULES",
    "D2S_MODES",
    "profile_from_dict",
    "load_profile_file",
]
