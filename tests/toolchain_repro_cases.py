"""The toolchain repro models (tests/toolchain_repros/<toolchain>/*.onnx): each is exact on ONNX
Runtime and wrong or rejected on its toolchain; a test asserts that this is still so, as
``xfail(strict=True)``, so that an upstream fix shows up as a failing XPASS.
"""

from __future__ import annotations

import os
from typing import Dict, List

import onnx
from toolchain_samples import REPROS_DIR


def repro_paths(toolchain: str) -> List[str]:
    """The repro models of ``toolchain``, sorted by name."""
    folder = os.path.join(REPROS_DIR, toolchain)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".onnx"))


def static_input_shapes(path: str) -> Dict[str, List[int]]:
    """The static input shapes written in a repro model."""
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    shapes = {}
    for vi in model.graph.input:
        if vi.name not in inits:
            shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return shapes
