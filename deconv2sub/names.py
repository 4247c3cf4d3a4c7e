"""The names the registries are keyed by, importable without onnx or numpy.

The command line offers them as choices (``--strategy``, ``--runtime``) and must answer ``--help``
and option errors without loading the heavy modules the registries need. Each tuple equals its
registry, in the registry's order (``tests/cli/test_cli_options.py`` checks it):

* :data:`EMISSIONS`: :data:`deconv2sub.rewrite.emissions.registry.NAMES`;
* :data:`STRATEGIES`: :data:`deconv2sub.targets.chooser.STRATEGIES`;
* :data:`RUNTIMES`, :data:`TOOLCHAINS`: :data:`deconv2sub.runtime.runners.RUNTIMES` and
  ``TOOLCHAINS``.

Target names need no copy: :data:`deconv2sub.targets.TARGET_NAMES` imports no heavy module.
"""

from __future__ import annotations

__all__ = ["EMISSIONS", "IN_PROCESS_RUNTIMES", "RUNTIMES", "STRATEGIES", "TOOLCHAINS"]

#: the fixed emissions, in the order shown to users
EMISSIONS = (
    "depth_to_space",
    "low_rank_transpose",
    "transpose",
    "two_stage",
    "transpose_gather",
    "pointwise_gemm",
    "per_phase",
    "channels_last",
    "per_phase_channels_last",
    "depth_to_space_3d",
)
#: ``--strategy``: the target profile's choice, measured per node, or a fixed emission
STRATEGIES = ("default", "auto") + EMISSIONS
#: runtimes that run in this process (and can time the candidates of ``--strategy auto``)
IN_PROCESS_RUNTIMES = ("onnxruntime", "openvino")
#: deployment toolchains: converted with their own converter, run by their own runtime
TOOLCHAINS = ("ncnn", "mnn", "tflite", "tvm", "iree", "rknn")
#: ``--runtime``
RUNTIMES = IN_PROCESS_RUNTIMES + TOOLCHAINS
