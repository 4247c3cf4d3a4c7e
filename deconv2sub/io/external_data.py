"""External data files of a model: where a tensor's data lives, whether it is there, reading it.

Locations are relative to the model file's folder; one that is absolute, climbs out with ``..`` or
goes through a symbolic link is refused, saying why (ONNX Runtime and the onnx library refuse them
too). Data can be read into the model (:func:`load_external_data_into`) or streamed by byte range
(:func:`copy_range`, used when saving without holding a big model in memory).
"""

from __future__ import annotations

import os
import pathlib
from typing import List, Optional

import onnx
from onnx import external_data_helper

from ..errors import InputError, OutputError
from .tensors import PathLike, external_location, first_line, is_unloaded, iter_tensors

#: Bytes read at a time when a data file is streamed.
COPY_CHUNK = 64 << 20


def external_data_path(tensor: onnx.TensorProto, base_dir: pathlib.Path,
                       model_path: pathlib.Path) -> pathlib.Path:
    """The file holding ``tensor``'s external data, in ``base_dir`` (the folder of ``model_path``).

    Raises :class:`InputError` saying why when it is not read: no location, a location outside the
    model's folder (absolute, or climbing out with ``..``; ONNX Runtime refuses these too), a
    symbolic link (the onnx library refuses to read through one), or no such file.
    """
    location = external_location(tensor)
    what = f"{model_path}: external data of tensor {tensor.name!r}"
    if not location:
        raise InputError(f"{what} has no location (the model does not say which file holds it)")
    if os.path.isabs(location):
        raise InputError(f"{what} is not read: its location {location!r} is an absolute path, "
                         "which points outside the model's folder (locations must be relative to "
                         "it)")
    if os.pardir in pathlib.PurePath(os.path.normpath(location)).parts:
        raise InputError(f"{what} is not read: its location {location!r} points outside the "
                         "model's folder")
    data_path = base_dir / location
    if data_path.is_symlink():
        raise InputError(f"{what} is not read: {data_path} is a symbolic link (it may point "
                         "outside the model's folder)")
    if not data_path.is_file():
        raise InputError(f"{model_path}: external data file {data_path} (tensor {tensor.name!r}) "
                         "is missing")
    return data_path


def load_external_data_into(model: onnx.ModelProto, base_dir: PathLike,
                            model_path: Optional[PathLike] = None) -> None:
    """Read the external tensors of ``model`` not loaded yet from their files in ``base_dir``.

    ``model_path`` (default: ``base_dir``) names the model in the :class:`InputError` raised when a
    file is refused, missing or too short.
    """
    base = pathlib.Path(os.fspath(base_dir))
    p = base if model_path is None else pathlib.Path(os.fspath(model_path))
    for tensor in iter_tensors(model):
        if not is_unloaded(tensor):
            continue
        data_path = external_data_path(tensor, base, p)
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(base))
        except Exception as exc:  # noqa: BLE001
            raise InputError(
                f"{p}: cannot load external data of tensor {tensor.name!r} from {data_path}: "
                f"{first_line(exc)}"
            ) from None


def external_data_files(model: onnx.ModelProto, base_dir: PathLike) -> List[pathlib.Path]:
    """Resolved paths of the external data files the model's tensors refer to.

    Locations are taken relative to ``base_dir`` (the model file's folder). A model loaded with its
    external data (the default of :func:`deconv2sub.io.load.load_model`) refers to no files any
    more; load it with ``load_external_data=False`` or use :func:`deconv2sub.io.load.model_files`.
    """
    base = pathlib.Path(os.fspath(base_dir))
    files: List[pathlib.Path] = []
    for tensor in iter_tensors(model):
        location = external_location(tensor)
        if external_data_helper.uses_external_data(tensor) and location:
            resolved = (base / location).resolve()
            if resolved not in files:
                files.append(resolved)
    return files


def verify_external_data(model: onnx.ModelProto, path: PathLike) -> None:
    """Check, without reading it, that the external data of ``model`` (saved at ``path``) is there.

    For a model loaded with ``load_external_data=False``: every referenced file must exist beside
    the model and be long enough for its tensors. Raises :class:`InputError` naming the file
    otherwise.
    """
    p = pathlib.Path(os.fspath(path))
    sizes: dict = {}
    for tensor in iter_tensors(model):
        if not is_unloaded(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        data_path = external_data_path(tensor, p.parent, p)
        if data_path not in sizes:
            try:
                sizes[data_path] = data_path.stat().st_size
            except OSError as exc:
                raise InputError(f"{p}: cannot read external data file {data_path}: "
                                 f"{first_line(exc)}") from None
        offset = int(info.offset or 0)
        length = int(info.length) if info.length else sizes[data_path] - offset
        if offset < 0 or length < 0 or offset + length > sizes[data_path]:
            raise InputError(
                f"{p}: external data file {data_path} is too short for tensor {tensor.name!r} "
                "(truncated or not the model's data file?)"
            )


def copy_range(src_path: str, offset: int, length: Optional[int], out) -> int:
    """Stream ``length`` bytes (None: to the end) of ``src_path`` from ``offset`` into ``out``.

    Returns the number of bytes copied; raises :class:`OutputError` when the file is shorter.
    """
    copied = 0
    with open(src_path, "rb") as src:
        src.seek(offset)
        while length is None or copied < length:
            chunk = src.read(COPY_CHUNK if length is None else min(COPY_CHUNK, length - copied))
            if not chunk:
                break
            out.write(chunk)
            copied += len(chunk)
    if length is not None and copied != length:
        raise OutputError(f"external data file {src_path} is shorter than its model says")
    return copied


def read_range(src_path: str, offset: int, length: Optional[int]) -> bytes:
    """``length`` bytes (None: to the end) of ``src_path`` from ``offset`` (see ``copy_range``)."""
    with open(src_path, "rb") as src:
        src.seek(offset)
        data = src.read() if length is None else src.read(length)
    if length is not None and len(data) != length:
        raise OutputError(f"external data file {src_path} is shorter than its model says")
    return data
