"""The ONNX checker (with shape inference) on a model or a file, as one line.

The checker is stricter than runtimes: ONNX Runtime runs models it refuses (e.g. graph outputs
declared without a shape), so ``convert`` reports a complaint (:func:`checker_complaint`) rather
than refusing on it alone; :func:`check_model` raises it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional, Union

import onnx

from ..errors import InputError
from .skeleton import STUB_LOCATION, skeleton, stub_all
from .tensors import PathLike, first_line


def check_model(model: Union[onnx.ModelProto, PathLike], what: str = "model") -> None:
    """Run the ONNX checker with shape inference; raise :class:`InputError` on failure.

    ``model`` is a ModelProto or a path. A path is checked from the file (external data is not read,
    only its presence checked). Models over protobuf's 2 GiB limit cannot be checked in memory; they
    are checked via a temporary skeleton file whose large tensors point at a sparse stub data file.
    """
    complaint = checker_complaint(model)
    if complaint is not None:
        raise InputError(f"{what} is not a valid ONNX model: {complaint}")


def checker_complaint(model: Union[onnx.ModelProto, PathLike]) -> Optional[str]:
    """The ONNX checker's complaint about ``model`` (one line), or None when it passes.

    As :func:`check_model`, which raises instead.
    """
    try:
        if not isinstance(model, onnx.ModelProto):
            onnx.checker.check_model(os.fspath(model), full_check=True)
            return None
        try:
            onnx.checker.check_model(model, full_check=True)
        except ValueError as exc:
            if "too large" not in str(exc):
                raise
            _check_large_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError, InferenceError, ...
        return first_line(exc)
    return None


def _check_large_model(model: onnx.ModelProto) -> None:
    """Check a > 2 GiB model by path, with large tensors moved to a sparse stub file."""
    skel, total = skeleton(model)
    if skel.ByteSize() > onnx.checker.MAXIMUM_PROTOBUF:  # big tensors in subgraphs, attributes
        copy = onnx.ModelProto()
        copy.CopyFrom(skel)
        skel, total = copy, stub_all(copy)
    with tempfile.TemporaryDirectory(prefix="deconv2sub-check-") as tmp:
        with open(os.path.join(tmp, STUB_LOCATION), "wb") as f:
            f.truncate(total)  # sparse: no disk space, no data written
        model_path = os.path.join(tmp, "model.onnx")
        with open(model_path, "wb") as f:
            f.write(skel.SerializeToString())
        del skel
        onnx.checker.check_model(model_path, full_check=True)
