"""deconv2sub: rewrite ONNX ConvTranspose into exactly equivalent sub-pixel convolutions.

Library API::

    import deconv2sub
    model, report = deconv2sub.convert_model("model.onnx")      # onnx.ModelProto or path
    report = deconv2sub.convert_graph(gs_graph)                   # onnx-graphsurgeon Graph, in place
"""

from .api import convert_model, infer_shapes
from .report import ConversionReport, NodeReport
from .rewrite.graph_pass import convert_graph
from .rewrite.options import ConvertOptions

__version__ = "0.1.0"

__all__ = [
    "convert_model",
    "convert_graph",
    "infer_shapes",
    "ConvertOptions",
    "ConversionReport",
    "NodeReport",
    "__version__",
]
