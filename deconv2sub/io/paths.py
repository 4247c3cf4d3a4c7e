"""Output paths, checked from the path alone: no onnx import, so the CLI can refuse early.

:func:`check_output_path` is the one check of an output path: the CLI runs it before the model is
read, :mod:`deconv2sub.pipeline` before any work, :func:`deconv2sub.io.save.stage_model` again
when staging.
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterable, Union

from ..errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]


def data_file_of(path: PathLike) -> pathlib.Path:
    """The external data file a model saved at ``path`` uses: ``<file name>.data`` beside it."""
    target = pathlib.Path(os.fspath(path))
    return target.parent / (target.name + ".data")


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file: under any spelling, through symbolic or hard links."""
    a, b = pathlib.Path(os.fspath(a)), pathlib.Path(os.fspath(b))
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_path(path: PathLike, force: bool = False, protect: Iterable[PathLike] = (),
                      data_file: bool = False, what: str = "the output") -> None:
    """Refuse an output path that cannot or must not be written; :class:`OutputError`, one line.

    In this order: the path (or, with ``data_file``, its ``<name>.data`` file) is one of the
    ``protect`` files (the input model and its data files) under any spelling, symbolic or hard
    link, even with ``force``; the path is a directory; its folder is missing, not a folder or not
    writable; without ``force``, the path (or its data file) exists, a dangling link included.
    ``what`` names the output in the directory message (e.g. ``"--save-inputs"``).
    """
    target = pathlib.Path(os.fspath(path))
    parent = target.parent
    targets = [target] + ([data_file_of(target)] if data_file else [])
    for protected in protect:
        for t in targets:
            if same_file(t, protected):
                raise OutputError(f"refusing to overwrite the input model's file {protected} "
                                  f"(output {t} is the same file)")
    if target.is_dir():
        raise OutputError(f"{target} is a directory; give a file name for {what}")
    if not parent.is_dir():
        why = "is not a folder" if parent.exists() else "does not exist"
        raise OutputError(f"cannot write {target}: folder {parent} {why}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: folder {parent} is not writable")
    if not force:
        for t in targets:
            if t.exists() or t.is_symlink():
                raise OutputError(f"{t} exists; pass --force to overwrite")
