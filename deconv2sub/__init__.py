"""deconv2sub: rewrite ONNX ConvTranspose into exactly equivalent sub-pixel convolutions.

Library API::

    import deconv2sub
    model, report = deconv2sub.convert_model("model.onnx")      # onnx.ModelProto or path
    report = deconv2sub.convert_graph(gs_graph) # onnx-graphsurgeon Graph, in place

The public names are imported on first use (PEP 562 ``__getattr__``), not when the package is
imported: importing ``deconv2sub.cli`` or ``deconv2sub.errors`` must not pay for onnx, numpy and
onnx-graphsurgeon (about a second), so that ``deconv2sub --help`` and option errors are instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "convert_model": "api",
    "infer_shapes": "api",
    "ConversionReport": "report",
    "NodeReport": "report",
    "ConvertOptions": "rewrite.options",
    "convert_graph": "rewrite.graph_pass",
}

__all__ = [
    "convert_model",
    "convert_graph",
    "infer_shapes",
    "ConvertOptions",
    "ConversionReport",
    "NodeReport",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .api import convert_model, infer_shapes
    from .report import ConversionReport, NodeReport
    from .rewrite.graph_pass import convert_graph
    from .rewrite.options import ConvertOptions


def __getattr__(name: str):
    """Import the submodule defining a public name the first time that name is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
