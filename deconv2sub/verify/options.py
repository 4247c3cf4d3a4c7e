"""How verification compares two models: :class:`VerifyOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

__all__ = ["VerifyOptions"]


@dataclass
class VerifyOptions:
    """How two models are compared.

    ``runtime`` runs the candidate, ``reference_runtime`` the original (default: the same, except
    for deployment toolchains, where the original runs on ONNX Runtime: the question is whether the
    toolchain runs the rewrite as ONNX Runtime runs the original).
    """

    runtime: str = "onnxruntime"
    reference_runtime: Optional[str] = None
    provider: str = "auto"
    require_cuda: bool = False
    optimize: bool = False  # ORT graph optimisations; off for comparison
    rtol: Optional[float] = None
    atol: Optional[float] = None
    seed: int = 0
    val_range: Optional[Tuple[float, float]] = None
    input_shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    inputs_npz: Optional[str] = None
    trials: Optional[int] = None  # None: 2 when some input dim is symbolic, else 1
    keep_outputs: bool = False  # keep both models' outputs in the result (to save them)
    localise_limit: int = 256  # most intermediate tensors exposed per localisation round

