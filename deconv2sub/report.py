"""Per-node and per-model conversion reports (plain data, JSON-ready)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional

REWRITTEN = "rewritten"
SKIPPED = "skipped"


@dataclass
class NodeReport:
    """What happened to one ConvTranspose node."""

    name: str
    graph: str  # "main", or a path like "main/If_3.then_branch"
    status: str  # REWRITTEN or SKIPPED
    reason: Optional[str] = None  # why it was skipped (one line)
    # the refusal's machine-readable code (deconv2sub.rewrite.refusal.Refusal)
    code: Optional[str] = None
    output: Optional[str] = None  # the tensor the node produced (kept by the rewrite)
    rank: Optional[int] = None
    strides: Optional[List[int]] = None
    kernel: Optional[List[int]] = None
    group: Optional[int] = None
    conv_kernel: Optional[List[int]] = None
    conv_channels: Optional[int] = None
    conv_dilations: Optional[List[int]] = None
    conv_pads: Optional[List[int]] = None
    # "DepthToSpace(CRD)", "DepthToSpace(DCR)", "Reshape/Transpose", "none"
    shuffle: Optional[str] = None
    crop: Optional[List[List[int]]] = None  # per axis [begin, end] cells dropped, None if no crop
    empty_phases: int = 0
    new_nodes: List[str] = field(default_factory=list)
    strategy: Optional[str] = None  # emission strategy used ("two_stage", "depth_to_space", ...)
    # why it was chosen (fixed option, default, or measured latencies)
    strategy_reason: Optional[str] = None
    # emissions declined on the way, as data: [emission, refusal code] pairs (the prose is in
    # strategy_reason), e.g. ["per_phase", "per_phase_empty_phase"], ["transpose_gather",
    # "outside_target"] for auto
    declined: List[List[str]] = field(default_factory=list)
    # consumers moved above the shuffle (e.g. "BatchNormalization bn")
    sunk: List[str] = field(default_factory=list)
    # where the rewritten chain rejoins the original graph: ``output``, or the output of the last
    # sunk consumer (``output`` itself then no longer exists in the converted model)
    rejoin: Optional[str] = None
    notes: List[str] = field(default_factory=list)  # e.g. "weight folded from 3 constant nodes"
    # multiply-accumulates per sample (batch 1) before and after, when the input size is known; the
    # ratio is also given without it (per input position, growth of the Conv output neglected)
    macs_before: Optional[int] = None
    macs_after: Optional[int] = None
    macs_ratio: Optional[float] = None
    # e.g. "MACs 1.78x the original's (zero taps)"
    warnings: List[str] = field(default_factory=list)

    @property
    def rewritten(self) -> bool:
        """Whether the node was replaced."""
        return self.status == REWRITTEN

    def summary(self) -> str:
        """One readable line, in the spirit of a rewriter rule's check()."""
        if not self.rewritten:
            return f"{self.name}: skipped: {self.reason}"
        crop = "no crop" if not self.crop else "crop " + " ".join(f"{b}/{e}" for b, e in self.crop)
        return (
            (
                f"{self.name}: ConvTranspose k{'x'.join(map(str, self.kernel))}"
                f" s{'x'.join(map(str, self.strides))}"
                f" g{self.group} -> Conv k{'x'.join(map(str, self.conv_kernel))}"
                f" ({self.conv_channels} ch)"
                f" + {self.shuffle}, {crop}"
                + (f", MACs {self.macs_ratio:.2f}x" if self.macs_ratio is not None else "")
            )
            + "".join(f"; {note}" for note in self.notes)
            + "".join(f"; warning: {w}" for w in self.warnings)
        )

    def to_dict(self) -> dict:
        """Every field as a JSON-ready dict."""
        return asdict(self)


@dataclass
class ConversionReport:
    """All ConvTranspose nodes found, rewritten or not."""

    nodes: List[NodeReport] = field(default_factory=list)
    target: Optional[str] = None  # the target profile's name
    # known toolchain bugs the output hits (ConvertOptions.toolchains):
    # deconv2sub.targets.bugs.BugHit
    toolchain_warnings: List[dict] = field(default_factory=list)
    # about the model rather than a node, one line each: e.g. the ONNX checker's complaint about an
    # input that ONNX Runtime loads all the same (``convert`` accepts such models)
    warnings: List[str] = field(default_factory=list)

    @property
    def rewritten(self) -> List[NodeReport]:
        """The nodes that were replaced."""
        return [n for n in self.nodes if n.rewritten]

    @property
    def skipped(self) -> List[NodeReport]:
        """The nodes left as ConvTranspose."""
        return [n for n in self.nodes if not n.rewritten]

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict, with counts."""
        return {
            "convtranspose_nodes": len(self.nodes),
            "rewritten": len(self.rewritten),
            "skipped": len(self.skipped),
            "target": self.target,
            "nodes": [n.to_dict() for n in self.nodes],
            "toolchain_warnings": list(self.toolchain_warnings),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line: how many ConvTranspose nodes were rewritten and skipped."""
        return (
            f"{len(self.nodes)} ConvTranspose node(s): {len(self.rewritten)} rewritten,"
            f" {len(self.skipped)} skipped"
        )
