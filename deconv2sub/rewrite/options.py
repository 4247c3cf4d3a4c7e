"""The knobs of the rewrite (:class:`ConvertOptions`), plain data shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

__all__ = ["ConvertOptions"]


@dataclass
class ConvertOptions:
    """Knobs of the rewrite.

    strategy: how each node is emitted (all exact; they differ in speed), see
        :mod:`deconv2sub.targets.chooser`:
        "default" (the measured best fixed emission), "auto" (measured per node on
        ``tune_runtime``), or a fixed "depth_to_space", "transpose", "two_stage".
    shuffle: for "depth_to_space": "auto" (DepthToSpace where it can express the shuffle), "reshape"
        (always Reshape/Transpose).
    order: for "depth_to_space": "auto" (CRD when the opset has DepthToSpace CRD or group > 1, else
    DCR),
        "CRD" or "DCR".
    sink: move per-channel/elementwise consumers (BatchNormalization, Relu, ...) above the shuffle
    so
        that runtimes fuse them into the Conv (see :mod:`deconv2sub.rewrite.sinking`).
    fold_crop: fold begin crops into the phase choice where that costs no tap (strategies other than
        "depth_to_space"; see :mod:`deconv2sub.plan.subpixel`).
    tune_runtime / tune_provider: where "auto" measures ("onnxruntime"/"openvino", "cpu"/"cuda").
    target: the deployment target, a built-in profile name ("portable", "onnxruntime", "openvino",
        "ncnn", "tflite", ...), a ``.toml`` profile path or a
        :class:`deconv2sub.targets.TargetProfile`: what ``strategy="default"`` may emit and prefers
        (see :mod:`deconv2sub.targets`). Every emission is exact on every runtime.
    toolchains: names of deployment toolchains ("ncnn", "iree", ...) whose known bugs the output is
        checked against (the report's ``toolchain_warnings``; see :mod:`deconv2sub.targets.bugs`).
    dynamic_shapes: whether the target runs graphs whose shapes depend on the run-time input sizes
        (the target profile's ``dynamic_shapes`` must allow it too). ``output_shape`` with a
        symbolic input size needs a crop computed at run time; with False such nodes are left alone
        with the reason.
    input_shapes: ``{graph input: shape}`` to assume where the model's dims are symbolic (the CLI's
        ``--input-shape``), for the decisions that stay exact at every size: the sizes ``"auto"``
        measures at. They never make the rewrite bake a size the model leaves symbolic (the row
        Gather, the Gemm): the model stays dynamic.
    planner: what plans each node (default :func:`deconv2sub.plan.subpixel.make_plan`); tests pass
        one that plants a fault to check that verification catches it.
    """

    shuffle: str = "auto"
    order: str = "auto"
    strategy: str = "default"
    sink: bool = True
    tune_runtime: str = "onnxruntime"
    tune_provider: str = "cpu"
    fold_crop: bool = True
    target: object = "portable"
    toolchains: tuple = ()
    dynamic_shapes: bool = True
    input_shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    planner: Optional[Callable] = None
