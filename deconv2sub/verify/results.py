"""What verification found: per trial, per diverging node or tensor, and overall.

:class:`VerificationResult` gathers the :class:`TrialResult` of each trial and, on a mismatch, the
:class:`Culprit` nodes (``convert``) or the :class:`Localisation` of the first :class:`Divergence`
(``validate``); it formats the human report and the JSON.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..runtime.base import RuntimeInfo
from .compare import (
    CRITERION,
    ComparisonResult,
    OutputComparison,
    applied_tolerances,
    criterion_lines,
    format_comparison_table,
)

__all__ = ["Culprit", "Divergence", "Localisation", "TrialResult", "VerificationResult"]


@dataclass
class TrialResult:
    """One trial: its input shapes and seed, and the comparison of every output."""

    index: int
    shapes: Dict[str, Tuple[int, ...]]
    comparison: ComparisonResult
    seed: Optional[int] = None  # None: the inputs came from a file

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"trial": self.index, "input_shapes": {k: list(v) for k, v in self.shapes.items()},
                "seed": self.seed, **self.comparison.to_dict()}


@dataclass
class Culprit:
    """A rewritten node whose output diverges (``convert``)."""

    node: str
    tensor: str
    max_abs_err: float
    max_rel_err: float
    first: bool = False

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dict(node=self.node, tensor=self.tensor, max_abs_err=self.max_abs_err,
                    max_rel_err=self.max_rel_err, first=self.first)


@dataclass
class Divergence:
    """A tensor both models produce that differs beyond tolerance, and who produces it in each."""

    tensor: str
    original_node: str
    original_op: str
    candidate_node: str
    candidate_op: str
    comparison: OutputComparison

    def to_dict(self) -> dict:
        """JSON-ready: the tensor, both producers, the comparison's statistics."""
        return {"tensor": self.tensor,
                "original_node": {"name": self.original_node, "op": self.original_op},
                "candidate_node": {"name": self.candidate_node, "op": self.candidate_op},
                **{k: v for k, v in self.comparison.to_dict().items() if k != "name"}}


@dataclass
class Localisation:
    """Where two models start to differ, found through the tensors they share by name."""

    shared: int = 0  # intermediate tensors both main graphs produce (same name and element type)
    compared: int = 0  # how many of them were compared (over all rounds)
    diverging: int = 0  # how many compared ones differ (first round: spread over the whole graph)
    rounds: int = 0
    first: Optional[Divergence] = None
    exact: bool = True  # every shared tensor before ``first`` was compared
    note: Optional[str] = None  # why localisation could not run or found nothing

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"shared_tensors": self.shared, "compared": self.compared,
                "diverging": self.diverging, "rounds": self.rounds, "exact": self.exact,
                "note": self.note,
                "first_divergence": None if self.first is None else self.first.to_dict()}

    def format_text(self) -> List[str]:
        """Report lines: the first divergence and its producers, or why there is none."""
        if self.first is None:
            return [f"localisation: {self.note or 'no shared tensor diverges'}"]
        d, c = self.first, self.first.comparison
        err = "-" if c.max_abs_err is None else f"{c.max_abs_err:.3g}"
        note = f" ({c.note})" if c.note else ""
        lines = [f"first divergence: tensor '{d.tensor}' (max abs err {err}){note}",
                 f"  produced in ORIGINAL by node '{d.original_node}' ({d.original_op})",
                 f"  produced in CANDIDATE by node '{d.candidate_node}' ({d.candidate_op})"]
        how = "" if self.exact else ", sampled: an earlier unsampled tensor may diverge too"
        lines.append(f"  {self.compared} of {self.shared} shared tensors compared in "
                     f"{self.rounds} round(s){how}")
        return lines


@dataclass
class VerificationResult:
    """The verdict over all trials, and what explains a failure (culprits, localisation)."""

    runtime: Optional[RuntimeInfo] = None
    trials: List[TrialResult] = field(default_factory=list)
    culprits: List[Culprit] = field(default_factory=list)
    unavailable: Optional[str] = None  # why the runtime could not verify (e.g. no float64 kernel)
    candidate_error: Optional[str] = None  # the candidate failed to load or run
    inputs: List[Dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    localisation: Optional[Localisation] = None
    candidate_runtime: Optional[RuntimeInfo] = None
    optimize: bool = False
    outputs_ref: List[Dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    outputs_cand: List[Dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    notes: List[str] = field(default_factory=list)  # e.g. a trial dropped: the original fails there

    @property
    def verified(self) -> bool:
        """Whether the runtime could judge (both models compared, or the candidate failed)."""
        return self.unavailable is None and (bool(self.trials) or self.candidate_error is not None)

    @property
    def passed(self) -> bool:
        """Verified, the candidate ran, and every output of every trial within tolerance."""
        return (self.verified and self.candidate_error is None
                and all(t.comparison.passed for t in self.trials))

    @property
    def repro_trial(self) -> int:
        """The trial worth reproducing: the first failing one, else the first."""
        return next((i for i, t in enumerate(self.trials) if not t.comparison.passed), 0)

    def max_errors(self) -> Tuple[float, float]:
        """Worst (abs, rel) error over all trials and outputs."""
        outputs = [o for t in self.trials for o in t.comparison.outputs]
        abs_e = [o.max_abs_err for o in outputs if o.max_abs_err is not None]
        rel_e = [o.max_rel_err for o in outputs if o.max_rel_err is not None]
        return (max(abs_e, default=0.0), max(rel_e, default=0.0))

    def criterion_lines(self) -> List[str]:
        """The element-wise pass test with the atol/rtol each compared dtype used (all trials)."""
        return criterion_lines(o for t in self.trials for o in t.comparison.outputs)

    def failing_outputs(self) -> List[str]:
        """Names of outputs that fail (or are unpaired) in some trial, in first-seen order."""
        names: List[str] = []
        for t in self.trials:
            c = t.comparison
            for n in [o.name for o in c.outputs if not o.passed] + c.unpaired_ref + c.unpaired_cand:
                if n not in names:
                    names.append(n)
        return names

    def status(self) -> str:
        """``PASSED``, ``FAILED`` or ``NOT VERIFIED``."""
        if not self.verified:
            return "NOT VERIFIED"
        return "PASSED" if self.passed else "FAILED"

    def to_dict(self) -> dict:
        """JSON-ready: the verdict, worst errors, criterion, trials, culprits, localisation."""
        abs_e, rel_e = self.max_errors()
        on_openvino = self.runtime is not None and self.runtime.runtime == "openvino"
        return {
            "status": self.status(),
            "runtime": None if self.runtime is None else self.runtime.describe(),
            "device": None if self.runtime is None else self.runtime.device,
            "graph_optimizations": self.optimize or on_openvino,
            "unavailable": self.unavailable,
            "candidate_error": self.candidate_error,
            "max_abs_err": abs_e,
            "max_rel_err": rel_e,
            "failing_outputs": self.failing_outputs(),
            "criterion": {"element_wise": CRITERION, "tolerances": applied_tolerances(
                o for t in self.trials for o in t.comparison.outputs)},
            "trials": [t.to_dict() for t in self.trials],
            "culprits": [c.to_dict() for c in self.culprits],
            "localisation": None if self.localisation is None else self.localisation.to_dict(),
            "notes": list(self.notes),
        }

    def format_text(self, width: int = 80, show_worst: bool = False, verdict: bool = True) -> str:
        """Human report.

        ``show_worst``: the worst element of passing outputs too; ``verdict``: end with the overall
        PASSED/FAILED line.
        """
        lines: List[str] = []

        def wrap(text: str) -> None:
            lines.extend(textwrap.wrap(text, width, subsequent_indent="    ",
                                       break_on_hyphens=False) or [""])

        if self.runtime is not None:
            opt = "on" if self.optimize else "off"
            if self.runtime.runtime == "openvino":
                opt = "on (OpenVINO always optimises)"
            wrap(f"Verification on {self.runtime.describe()}; graph optimisations {opt}")
            cand = self.candidate_runtime
            if cand is not None and cand.describe() != self.runtime.describe():
                wrap(f"  the candidate ran on {cand.describe()}")
        if self.unavailable:
            wrap(f"NOT VERIFIED: {self.unavailable}")
            return "\n".join(lines)
        if self.candidate_error:
            wrap(f"FAILED: {self.candidate_error}")
            return "\n".join(lines)
        for t in self.trials:
            shapes = ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in t.shapes.items())
            origin = " (from file)" if t.seed is None else f" (seed {t.seed})"
            wrap(f"trial {t.index + 1}: {shapes}{origin}")
            lines.append(format_comparison_table(t.comparison, width, show_worst=show_worst))
        for note in self.notes:
            wrap(f"note: {note}")
        for c in self.culprits:
            tag = "first divergence" if c.first else "diverges"
            wrap(f"  {tag}: node '{c.node}' (tensor '{c.tensor}'): max abs err {c.max_abs_err:.3g}")
        if self.localisation is not None:
            for line in self.localisation.format_text():
                wrap(line)
        if verdict:
            abs_e, rel_e = self.max_errors()
            lines.extend(self.criterion_lines())
            lines.append(f"{self.status()}: max abs err {abs_e:.3g}, max rel err {rel_e:.3g}")
        return "\n".join(lines)

