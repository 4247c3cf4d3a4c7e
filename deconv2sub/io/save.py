"""Saving a model atomically: output-path checks, staging beside the target, renaming into place.

Nothing is left partial or clobbered: the files are written into a fresh temporary folder beside
the target, fsynced, and moved into place with :func:`os.replace` only once complete (external data
file first, model file last); the input model's files (``protect``) are never written.
:func:`~.paths.check_output_path` is the one check of an output path, used by the CLI before any
work is done and again when staging.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from typing import Iterable, List, Optional

import onnx

from ..errors import OutputError
from .data_file import prepare
from .paths import check_output_path, data_file_of, same_file
from .tensors import (
    DETACHED_LOCATION,
    PathLike,
    external_location,
    first_line,
    is_detached,
    is_unloaded,
    iter_tensors,
    tensor_nbytes,
    uses_external_data,
)

#: Above this size (serialized, detached data included) a model is saved with external data
#: (protobuf caps a file at 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def needs_external_data(model: onnx.ModelProto) -> bool:
    """Whether ``model`` is saved with external data when the caller does not say.

    Yes when one of its tensors is marked external (its data still in a file of the input, or in
    memory with the marker kept: the output keeps the input's layout) or when the model, the data
    of its detached tensors (:data:`DETACHED_LOCATION`) included, exceeds
    :data:`EXTERNAL_DATA_THRESHOLD`. Detached tensors alone do not count as external: they are
    held apart only to save copies in memory.
    """
    size = model.ByteSize()
    for t in iter_tensors(model):
        if is_detached(t):
            size += _detached_nbytes(t)
        elif uses_external_data(t):
            return True
    return size > EXTERNAL_DATA_THRESHOLD


def _detached_nbytes(tensor: onnx.TensorProto) -> int:
    nbytes = tensor_nbytes(tensor)
    if nbytes is not None:
        return nbytes
    length = next((e.value for e in tensor.external_data if e.key == "length"), "0")
    return int(length or 0)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: pathlib.Path) -> None:
    """Best effort: make the renames durable (not possible on every platform)."""
    try:
        _fsync(str(path))
    except OSError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _tmp_prefix(target: pathlib.Path) -> str:
    return f".{target.name}.tmp-"


def _remove_stale_temporaries(target: pathlib.Path) -> None:
    """Remove the temporary folders beside ``target`` of saves that were killed (process gone)."""
    prefix = _tmp_prefix(target)
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)


def _rmtree(path: Optional[str]) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


class StagedModel:
    """A model written completely into a temporary folder beside its target, not yet in place.

    :meth:`commit` moves it into place (external data file first, model file last); :meth:`discard`
    (also on leaving a ``with`` block without commit) removes it. ``model_path`` can be handed to a
    runtime or the checker before committing: external data sits beside it under its final name.
    """

    def __init__(self, target: pathlib.Path, tmp_dir: str, data_name: Optional[str], force: bool,
                 protect: List[pathlib.Path]):
        """Wrap the files written into ``tmp_dir`` (``data_name``: the data file's, if any)."""
        self.target = target
        self.tmp_dir: Optional[str] = tmp_dir
        self.model_path = os.path.join(tmp_dir, target.name)
        self.data_name = data_name
        self.data_path = os.path.join(tmp_dir, data_name) if data_name else None
        self.force = force
        self.protect = protect
        self.committed = False

    def commit(self) -> None:
        """Move the staged files into place; :class:`OutputError` on failure (then discarded)."""
        if self.tmp_dir is None:
            raise OutputError(f"cannot write {self.target}: the staged model was discarded")
        target, parent = self.target, self.target.parent
        data_target = data_file_of(target)
        try:
            has_data = self.data_path is not None and os.path.exists(self.data_path)
            if has_data:
                _fsync(self.data_path)
            _fsync(self.model_path)
            if has_data and os.path.lexists(data_target) and os.path.lexists(target):
                # The old target may use the data file we are about to replace: remove it first, so
                # that an interruption leaves no output rather than an old model with new data.
                os.unlink(target)
            if has_data:
                os.replace(self.data_path, data_target)
            os.replace(self.model_path, target)
            if not has_data and self.force and os.path.lexists(data_target) and not any(
                same_file(data_target, p) for p in self.protect
            ):
                os.unlink(data_target)  # the data file of the model we just replaced
            _fsync_dir(parent)
            self.committed = True
        except PermissionError:
            raise OutputError(f"cannot write {target}: permission denied") from None
        except Exception as exc:  # noqa: BLE001 - KeyboardInterrupt passes through unwrapped
            raise OutputError(f"cannot write {target}: {first_line(exc)}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the staged files (nothing happens once committed or discarded)."""
        _rmtree(self.tmp_dir)
        self.tmp_dir = None

    def __enter__(self) -> "StagedModel":
        """The staged model itself."""
        return self

    def __exit__(self, *exc) -> None:
        """Discard the staged files unless committed."""
        self.discard()


def stage_model(
    model: onnx.ModelProto,
    path: PathLike,
    *,
    force: bool = False,
    external_data: Optional[bool] = None,
    protect: Iterable[PathLike] = (),
    source_dir: Optional[PathLike] = None,
    consume: bool = False,
    detached: Optional[dict] = None,
) -> StagedModel:
    """Write ``model`` into a temporary folder beside ``path``; see :func:`save_model`.

    ``source_dir``: folder against which external-data locations of tensors *not loaded* into
    memory are resolved; their bytes are streamed into the new data file (or inlined) without being
    held in memory. ``consume``: the caller no longer needs ``model``; its tensors are rewritten in
    place to point to the new data file and their in-memory data dropped as it is written (no copy
    of a big model). ``detached``: data of tensors marked with :data:`DETACHED_LOCATION`, by name
    (NumPy arrays or TensorProtos); each is written straight into the output and dropped from the
    dict.
    """
    target = pathlib.Path(os.fspath(path))
    data_name = data_file_of(target).name
    use_external = needs_external_data(model) if external_data is None else external_data

    detached = {} if detached is None else detached
    for t in iter_tensors(model):
        if not is_unloaded(t):
            continue
        if external_location(t) == DETACHED_LOCATION:
            if t.name not in detached:
                raise OutputError(f"cannot write {target}: the data of tensor {t.name!r} is "
                                  "missing")
        elif source_dir is None:
            raise OutputError(
                f"cannot write {target}: the data of tensor {t.name!r} is in an external "
                "file that was not loaded"
            )

    protect = [pathlib.Path(os.fspath(p)) for p in protect]
    check_output_path(target, force, protect, data_file=use_external)

    tmp_dir = None
    try:
        _remove_stale_temporaries(target)
        tmp_dir = tempfile.mkdtemp(prefix=f"{_tmp_prefix(target)}{os.getpid()}-", dir=target.parent)
        staged = StagedModel(target, tmp_dir, data_name if use_external else None, force, protect)
        work = prepare(model, use_external, data_name, staged.data_path, source_dir, consume,
                       detached)
        onnx.save_model(work, staged.model_path, format="protobuf")
        del work
        return staged
    except PermissionError:
        _rmtree(tmp_dir)
        raise OutputError(f"cannot write {target}: permission denied") from None
    except OutputError:
        _rmtree(tmp_dir)
        raise
    except BaseException as exc:
        _rmtree(tmp_dir)
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit pass through unwrapped
            raise
        raise OutputError(f"cannot write {target}: {first_line(exc)}") from None


def save_model(
    model: onnx.ModelProto,
    path: PathLike,
    *,
    force: bool = False,
    external_data: Optional[bool] = None,
    protect: Iterable[PathLike] = (),
    source_dir: Optional[PathLike] = None,
    detached: Optional[dict] = None,
) -> None:
    """Save ``model`` to ``path`` atomically; the caller's ``model`` is not modified.

    The files are written into a fresh temporary folder beside ``path``, fsynced and then moved
    into place with :func:`os.replace` (external data file first, model file last), so an error or
    Ctrl-C leaves no partial file and an existing target intact. ``external_data=None`` picks
    external data automatically (:func:`needs_external_data`: tensors already marked external, or
    a model near the 2 GiB protobuf limit); external data goes to ``<file name>.data`` beside the
    model with a relative location. Tensors whose data was not loaded are copied from their files
    in ``source_dir`` (streamed); tensors marked :data:`DETACHED_LOCATION` take their data from
    ``detached`` (see :func:`stage_model`).

    Raises :class:`OutputError` for every refusal of :func:`check_output_path` and for any write
    failure.
    """
    stage_model(model, path, force=force, external_data=external_data, protect=protect,
                source_dir=source_dir, detached=detached).commit()
