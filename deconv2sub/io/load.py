"""Reading a model file: one clear :class:`~deconv2sub.errors.InputError` line for every failure.

:func:`load_model` pulls external tensor data into memory (unless asked not to), so a loaded model
no longer says which files it came from: :func:`model_files` says which files an input model
occupies (the ``protect`` list of :func:`deconv2sub.io.save.save_model`).
"""

from __future__ import annotations

import os
import pathlib
from typing import List, Optional

import onnx

from ..errors import InputError
from .external_data import external_data_files, load_external_data_into
from .tensors import PathLike, first_line


def load_model(path: PathLike, load_external_data: bool = True) -> onnx.ModelProto:
    """Read an ONNX model (binary protobuf) from ``path`` without modifying the file.

    With ``load_external_data`` the tensor data stored in external files (relative to the model's
    folder) is read into the model. Raises :class:`InputError` with a one-line message naming the
    file for every failure: missing, a directory, unreadable, empty, not an ONNX protobuf,
    truncated, or missing/bad external data.
    """
    try:
        p = pathlib.Path(os.fspath(path))
    except TypeError as exc:
        raise InputError(f"invalid model path {path!r}: {first_line(exc)}") from None

    try:
        if not p.exists():
            raise InputError(f"{p}: no such file")
        if p.is_dir():
            raise InputError(f"{p} is a directory, not an ONNX model file")
        with open(p, "rb") as f:
            data = f.read()
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"cannot read {p}: permission denied") from None
    except Exception as exc:  # noqa: BLE001 - any OS failure becomes one clear line
        raise InputError(f"cannot read {p}: {first_line(exc)}") from None

    if not data:
        raise InputError(f"{p} is empty, not an ONNX model")

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - DecodeError, RuntimeError, ...
        raise InputError(
            f"{p} is not a valid ONNX model (not an ONNX protobuf or truncated: {first_line(exc)})"
        ) from None
    del data

    # A cut-off or foreign file can still parse as a (partial) protobuf.
    if model.ir_version <= 0 or not model.HasField("graph") or (
        model.ir_version >= 3 and not model.opset_import
    ):
        raise InputError(
            f"{p} is not a valid ONNX model (missing ir_version, graph or opset_import; "
            "truncated or not an ONNX file?)"
        )

    if load_external_data:
        load_external_data_into(model, p.parent, p)
    return model


def model_files(path: PathLike, model: Optional[onnx.ModelProto] = None) -> List[pathlib.Path]:
    """The model file and its external data files, resolved (the ``protect`` list for an input).

    ``model``: the file already loaded (without external data), so that it is not read twice.
    """
    p = pathlib.Path(os.fspath(path))
    if model is None:
        model = load_model(p, load_external_data=False)
    return [p.resolve()] + external_data_files(model, p.parent)


def model_size_bytes(path: PathLike) -> int:
    """Size in bytes of the ``.onnx`` file plus its external data files."""
    total = 0
    for f in model_files(path):
        try:
            total += f.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: cannot stat {f}: {first_line(exc)}") from None
    return total
