"""Loading, checking and (atomically) saving ONNX models.

Every failure surfaces as a one-line :class:`~deconv2sub.errors.InputError`
(reading) or :class:`~deconv2sub.errors.OutputError` (writing) that names the
file involved; no raw exception escapes.

External data: :func:`load_model` pulls external tensor data into memory, so a
loaded model no longer says which files it came from. Use :func:`model_files`
(or :func:`external_data_files` on a model loaded with
``load_external_data=False``) to learn the files an input model occupies, e.g.
to build the ``protect`` list of :func:`save_model`.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
from typing import Iterable, Iterator, List, Optional, Union

import onnx
from onnx import external_data_helper

from ..errors import InputError, OutputError

PathLike = Union[str, "os.PathLike[str]"]

#: Above this serialized size a model is saved with external data (protobuf caps at 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
#: Tensors whose raw data has at least this many bytes go to the external data file.
EXTERNAL_TENSOR_MIN_BYTES = 1024
#: External-data location of tensors whose data is held apart from the model (``detached=`` of
#: :func:`stage_model`; see ``api.convert_for_save``). Never written to a file.
DETACHED_LOCATION = "<deconv2sub:detached>"


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type name)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _iter_graph_tensors(graph) -> Iterator[onnx.TensorProto]:
    """Initializers and attribute tensors of a graph or function, subgraphs included."""
    yield from getattr(graph, "initializer", ())
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _iter_graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _iter_graph_tensors(sub)


def _iter_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model that can hold external data (graph, subgraphs, functions)."""
    yield from _iter_graph_tensors(model.graph)
    for function in model.functions:
        yield from _iter_graph_tensors(function)


def _uses_external_data(tensor: onnx.TensorProto) -> bool:
    return external_data_helper.uses_external_data(tensor)


def _location(tensor: onnx.TensorProto) -> str:
    for entry in tensor.external_data:
        if entry.key == "location":
            return entry.value
    return ""


# --------------------------------------------------------------------------- loading


def load_model(path: PathLike, load_external_data: bool = True) -> onnx.ModelProto:
    """Read an ONNX model (binary protobuf) from ``path`` without modifying the file.

    With ``load_external_data`` the tensor data stored in external files (relative
    to the model's folder) is read into the model. Raises :class:`InputError` with a
    one-line message naming the file for every failure: missing, a directory,
    unreadable, empty, not an ONNX protobuf, truncated, or missing/bad external data.
    """
    try:
        p = pathlib.Path(os.fspath(path))
    except TypeError as exc:
        raise InputError(f"invalid model path {path!r}: {_first_line(exc)}") from None

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
        raise InputError(f"cannot read {p}: {_first_line(exc)}") from None

    if not data:
        raise InputError(f"{p} is empty, not an ONNX model")

    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - DecodeError, RuntimeError, ...
        raise InputError(
            f"{p} is not a valid ONNX model (not an ONNX protobuf or truncated: {_first_line(exc)})"
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
        _load_external_data(model, p)
    return model


def _load_external_data(model: onnx.ModelProto, p: pathlib.Path) -> None:
    """Read every external tensor of ``model`` (saved at ``p``) into memory."""
    _load_external(model, p.parent, p)


def load_external_data_into(model: onnx.ModelProto, base_dir: PathLike) -> None:
    """Read the external tensors of ``model`` that are not loaded yet from files in ``base_dir``."""
    base = pathlib.Path(os.fspath(base_dir))
    _load_external(model, base, base)


def _load_external(model: onnx.ModelProto, base_dir: pathlib.Path, p: pathlib.Path) -> None:
    for tensor in _iter_tensors(model):
        if not _uses_external_data(tensor):
            continue
        if tensor.HasField("raw_data"):
            continue
        data_path = _external_data_path(tensor, base_dir, p)
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(base_dir))
        except Exception as exc:  # noqa: BLE001
            raise InputError(
                f"{p}: cannot load external data of tensor {tensor.name!r} from {data_path}: "
                f"{_first_line(exc)}"
            ) from None


def _external_data_path(tensor: onnx.TensorProto, base_dir: pathlib.Path,
                        p: pathlib.Path) -> pathlib.Path:
    """The file holding ``tensor``'s external data, in ``base_dir`` (the folder of the model ``p``).

    Raises :class:`InputError` saying why when it is not read: no location, a location outside the
    model's folder (absolute, or climbing out with ``..``; ONNX Runtime refuses these too), a
    symbolic link (the onnx library refuses to read through one), or no such file.
    """
    location = _location(tensor)
    what = f"{p}: external data of tensor {tensor.name!r}"
    if not location:
        raise InputError(f"{what} has no location (the model does not say which file holds it)")
    if os.path.isabs(location):
        raise InputError(f"{what} is not read: its location {location!r} is an absolute path, which "
                         "points outside the model's folder (locations must be relative to it)")
    if os.pardir in pathlib.PurePath(os.path.normpath(location)).parts:
        raise InputError(f"{what} is not read: its location {location!r} points outside the model's "
                         "folder")
    data_path = base_dir / location
    if data_path.is_symlink():
        raise InputError(f"{what} is not read: {data_path} is a symbolic link (it may point outside "
                         "the model's folder)")
    if not data_path.is_file():
        raise InputError(f"{p}: external data file {data_path} (tensor {tensor.name!r}) is missing")
    return data_path


def external_data_files(model: onnx.ModelProto, base_dir: PathLike) -> List[pathlib.Path]:
    """Resolved paths of the external data files the model's tensors refer to.

    Locations are taken relative to ``base_dir`` (the model file's folder). A model
    loaded with its external data (the default of :func:`load_model`) refers to no
    files any more; load it with ``load_external_data=False`` or use :func:`model_files`.
    """
    base = pathlib.Path(os.fspath(base_dir))
    files: List[pathlib.Path] = []
    for tensor in _iter_tensors(model):
        if _uses_external_data(tensor) and _location(tensor):
            resolved = (base / _location(tensor)).resolve()
            if resolved not in files:
                files.append(resolved)
    return files


def model_files(path: PathLike) -> List[pathlib.Path]:
    """The model file and its external data files, resolved (the ``protect`` list for an input)."""
    p = pathlib.Path(os.fspath(path))
    model = load_model(p, load_external_data=False)
    return [p.resolve()] + external_data_files(model, p.parent)


def model_size_bytes(path: PathLike) -> int:
    """Size in bytes of the ``.onnx`` file plus its external data files."""
    total = 0
    for f in model_files(path):
        try:
            total += f.stat().st_size
        except OSError as exc:
            raise InputError(f"{path}: cannot stat {f}: {_first_line(exc)}") from None
    return total


# -------------------------------------------------------------------------- checking


def verify_external_data(model: onnx.ModelProto, path: PathLike) -> None:
    """Check, without reading them, that the external data of ``model`` (saved at ``path``) is there.

    For a model loaded with ``load_external_data=False``: every referenced file must exist beside the
    model and be long enough for its tensors. Raises :class:`InputError` naming the file otherwise.
    """
    p = pathlib.Path(os.fspath(path))
    sizes: dict = {}
    for tensor in _iter_tensors(model):
        if not _uses_external_data(tensor) or tensor.HasField("raw_data"):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        data_path = _external_data_path(tensor, p.parent, p)
        if data_path not in sizes:
            try:
                sizes[data_path] = data_path.stat().st_size
            except OSError as exc:
                raise InputError(f"{p}: cannot read external data file {data_path}: {_first_line(exc)}") from None
        offset = int(info.offset or 0)
        length = int(info.length) if info.length else sizes[data_path] - offset
        if offset < 0 or length < 0 or offset + length > sizes[data_path]:
            raise InputError(
                f"{p}: external data file {data_path} is too short for tensor {tensor.name!r} "
                "(truncated or not the model's data file?)"
            )


def check_model(model: Union[onnx.ModelProto, PathLike], what: str = "model") -> None:
    """Run the ONNX checker with shape inference; raise :class:`InputError` on failure.

    ``model`` is a ModelProto or a path. A path is checked from the file (external data is not read,
    only its presence checked). Models over protobuf's 2 GiB limit cannot be checked in memory; they are
    checked via a temporary skeleton file whose large tensors point at a sparse stub data file.
    """
    complaint = checker_complaint(model)
    if complaint is not None:
        raise InputError(f"{what} is not a valid ONNX model: {complaint}")


def checker_complaint(model: Union[onnx.ModelProto, PathLike]) -> Optional[str]:
    """The ONNX checker's complaint about ``model`` (one line), or None when it passes; as
    :func:`check_model`, which raises instead.

    The checker is stricter than runtimes: ONNX Runtime runs models it refuses (e.g. graph outputs
    declared without a shape), so ``convert`` reports a complaint rather than refusing on it alone.
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
        return _first_line(exc)
    return None


def skeleton(model: onnx.ModelProto, min_bytes: int = EXTERNAL_TENSOR_MIN_BYTES, location: str = "stub.data"
             ) -> "tuple[onnx.ModelProto, int]":
    """A copy of ``model`` whose main-graph initializers of ``min_bytes`` or more carry no data: they are
    marked external (``location``, consecutive offsets) instead. Returns (skeleton, total stub bytes).

    Built field by field, so the big tensors are never copied (``CopyFrom`` would double the memory of a
    big model). Good for the checker and shape inference, which only need dims and small constants.
    """
    out = onnx.ModelProto()
    for desc, value in model.ListFields():
        if desc.name == "graph":
            continue
        _copy_field(out, desc.name, value)
    graph = out.graph
    for desc, value in model.graph.ListFields():
        if desc.name == "initializer":
            continue
        _copy_field(graph, desc.name, value)
    offset = 0
    for init in model.graph.initializer:
        item_bytes = _tensor_nbytes(init)
        if item_bytes is not None and item_bytes >= min_bytes and not _uses_external_data(init):
            stub = graph.initializer.add()
            stub.name, stub.data_type = init.name, init.data_type
            stub.dims.extend(init.dims)
            if init.doc_string:
                stub.doc_string = init.doc_string
            _point_to(stub, location, offset, item_bytes)
            offset += item_bytes
        else:
            graph.initializer.add().CopyFrom(init)
    return out, offset


def _copy_field(dst, name: str, value) -> None:
    if isinstance(value, (str, bytes, int, float, bool)):
        setattr(dst, name, value)
    elif hasattr(value, "CopyFrom"):
        getattr(dst, name).CopyFrom(value)
    else:  # repeated field
        getattr(dst, name).extend(value)


def _tensor_nbytes(tensor: onnx.TensorProto) -> Optional[int]:
    """Bytes of a tensor's data computed from dims and type (None for strings / unknown types)."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:  # noqa: BLE001
        return None
    if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    count = 1
    for d in tensor.dims:
        count *= int(d)
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (count + 1) // 2
    return count * itemsize


def _check_large_model(model: onnx.ModelProto) -> None:
    """Check a > 2 GiB model by path, with large tensors moved to a sparse stub file."""
    skel, total = skeleton(model)
    if skel.ByteSize() > onnx.checker.MAXIMUM_PROTOBUF:  # big tensors elsewhere (subgraphs, attributes)
        copy = onnx.ModelProto()
        copy.CopyFrom(skel)
        skel, total = copy, _stub_all(copy)
    with tempfile.TemporaryDirectory(prefix="deconv2sub-check-") as tmp:
        with open(os.path.join(tmp, "stub.data"), "wb") as f:
            f.truncate(total)  # sparse: no disk space, no data written
        model_path = os.path.join(tmp, "model.onnx")
        with open(model_path, "wb") as f:
            f.write(skel.SerializeToString())
        del skel
        onnx.checker.check_model(model_path, full_check=True)


def _stub_all(model: onnx.ModelProto) -> int:
    offset = 0
    for tensor in _iter_tensors(model):
        if tensor.HasField("raw_data"):
            length = len(tensor.raw_data)
            if length >= EXTERNAL_TENSOR_MIN_BYTES:
                external_data_helper.set_external_data(tensor, "stub.data", offset, length)
                tensor.ClearField("raw_data")
                offset += length
    return offset


# ---------------------------------------------------------------------------- saving

#: Tensors of at least this many bytes start at a multiple of ALIGNMENT in the external data file, so
#: that runtimes can memory-map them (ONNX Runtime maps aligned external initializers).
ALIGN_MIN_BYTES = 1 << 20
ALIGNMENT = 1 << 16
_COPY_CHUNK = 64 << 20


def _same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _needs_external_data(model: onnx.ModelProto) -> bool:
    if any(_uses_external_data(t) for t in _iter_tensors(model)):
        return True
    return model.ByteSize() > EXTERNAL_DATA_THRESHOLD


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
    """Remove temporary folders left beside ``target`` by saves that were killed (their process is gone)."""
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


class StagedModel:
    """A model written completely into a temporary folder beside its target, not yet in place.

    :meth:`commit` moves it into place (external data file first, model file last); :meth:`discard`
    (also on leaving a ``with`` block without commit) removes it. ``model_path`` can be handed to a
    runtime or the checker before committing: external data sits beside it under its final name.
    """

    def __init__(self, target: pathlib.Path, tmp_dir: str, data_name: Optional[str], force: bool,
                 protect: List[pathlib.Path]):
        self.target = target
        self.tmp_dir: Optional[str] = tmp_dir
        self.model_path = os.path.join(tmp_dir, target.name)
        self.data_name = data_name
        self.data_path = os.path.join(tmp_dir, data_name) if data_name else None
        self.force = force
        self.protect = protect
        self.committed = False

    def commit(self) -> None:
        if self.tmp_dir is None:
            raise OutputError(f"cannot write {self.target}: the staged model was discarded")
        target, parent = self.target, self.target.parent
        data_target = parent / (target.name + ".data")
        try:
            has_data = self.data_path is not None and os.path.exists(self.data_path)
            if has_data:
                _fsync(self.data_path)
            _fsync(self.model_path)
            if has_data and os.path.lexists(data_target) and os.path.lexists(target):
                # The old target may use the data file we are about to replace: remove it first, so that an
                # interruption leaves no output rather than an old model paired with new data.
                os.unlink(target)
            if has_data:
                os.replace(self.data_path, data_target)
            os.replace(self.model_path, target)
            if not has_data and self.force and os.path.lexists(data_target) and not any(
                _same_file(data_target, p) for p in self.protect
            ):
                os.unlink(data_target)  # the data file of the model we just replaced
            _fsync_dir(parent)
            self.committed = True
        except PermissionError:
            raise OutputError(f"cannot write {target}: permission denied") from None
        except Exception as exc:  # noqa: BLE001 - KeyboardInterrupt passes through unwrapped
            raise OutputError(f"cannot write {target}: {_first_line(exc)}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        _rmtree(self.tmp_dir)
        self.tmp_dir = None

    def __enter__(self) -> "StagedModel":
        return self

    def __exit__(self, *exc) -> None:
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
    """Write ``model`` into a temporary folder beside ``path``; see :func:`save_model` for the options.

    ``source_dir``: folder against which external-data locations of tensors *not loaded* into memory are
    resolved; their bytes are streamed into the new data file (or inlined) without being held in memory.
    ``consume``: the caller no longer needs ``model``; its tensors are rewritten in place to point to
    the new data file and their in-memory data dropped as it is written (no copy of a big model).
    ``detached``: data of tensors marked with :data:`DETACHED_LOCATION`, by name (NumPy arrays or
    TensorProtos); each is written straight into the output and dropped from the dict.
    """
    target = pathlib.Path(os.fspath(path))
    parent = target.parent
    data_name = target.name + ".data"
    use_external = _needs_external_data(model) if external_data is None else external_data

    detached = {} if detached is None else detached
    for t in _iter_tensors(model):
        if not _uses_external_data(t) or t.HasField("raw_data"):
            continue
        if _location(t) == DETACHED_LOCATION:
            if t.name not in detached:
                raise OutputError(f"cannot write {target}: the data of tensor {t.name!r} is missing")
        elif source_dir is None:
            raise OutputError(
                f"cannot write {target}: the data of tensor {t.name!r} is in an external "
                "file that was not loaded"
            )

    protect = [pathlib.Path(os.fspath(p)) for p in protect]
    targets = [target] + ([parent / data_name] if use_external else [])
    for protected in protect:
        for t in targets:
            if _same_file(t, protected):
                raise OutputError(f"refusing to overwrite the input model {t}")
    if target.is_dir():
        raise OutputError(f"{target} is a directory")
    if not parent.is_dir():
        raise OutputError(f"cannot write {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: folder {parent} is not writable")
    if not force:
        for t in targets:
            if t.exists() or t.is_symlink():
                raise OutputError(f"{t} exists; pass --force to overwrite")

    tmp_dir = None
    try:
        _remove_stale_temporaries(target)
        tmp_dir = tempfile.mkdtemp(prefix=f"{_tmp_prefix(target)}{os.getpid()}-", dir=parent)
        staged = StagedModel(target, tmp_dir, data_name if use_external else None, force, protect)
        work = _prepare(model, use_external, data_name, staged.data_path, source_dir, consume, detached)
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
        raise OutputError(f"cannot write {target}: {_first_line(exc)}") from None


def _rmtree(path: Optional[str]) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


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

    The files are written into a fresh temporary folder beside ``path``, fsynced and
    then moved into place with :func:`os.replace` (external data file first, model
    file last), so an error or Ctrl-C leaves no partial file and an existing target
    intact. ``external_data=None`` picks external data automatically (model near the
    2 GiB protobuf limit, or tensors already marked external); external data goes to
    ``<file name>.data`` beside the model with a relative location. Tensors whose data
    was not loaded are copied from their files in ``source_dir`` (streamed); tensors marked
    :data:`DETACHED_LOCATION` take their data from ``detached`` (see :func:`stage_model`).

    Raises :class:`OutputError` if the target exists (without ``force``), is one of
    the ``protect`` files (always), is a directory, or its folder is missing or not
    writable, and for any write failure.
    """
    stage_model(model, path, force=force, external_data=external_data, protect=protect,
                source_dir=source_dir, detached=detached).commit()


def _copy_range(src_path: str, offset: int, length: Optional[int], out) -> int:
    """Stream ``length`` bytes (None: to the end) of ``src_path`` from ``offset`` into ``out``."""
    copied = 0
    with open(src_path, "rb") as src:
        src.seek(offset)
        while length is None or copied < length:
            chunk = src.read(_COPY_CHUNK if length is None else min(_COPY_CHUNK, length - copied))
            if not chunk:
                break
            out.write(chunk)
            copied += len(chunk)
    if length is not None and copied != length:
        raise OutputError(f"external data file {src_path} is shorter than its model says")
    return copied


def _read_range(src_path: str, offset: int, length: Optional[int]) -> bytes:
    with open(src_path, "rb") as src:
        src.seek(offset)
        data = src.read() if length is None else src.read(length)
    if length is not None and len(data) != length:
        raise OutputError(f"external data file {src_path} is shorter than its model says")
    return data


def _prepare(model: onnx.ModelProto, use_external: bool, location: str, data_path: Optional[str],
             source_dir: Optional[PathLike], consume: bool, detached: Optional[dict] = None) -> onnx.ModelProto:
    """The proto to hand to ``onnx.save_model``, with external data already written to ``data_path``.

    ``model`` itself when nothing must change; else ``model`` (``consume``) or a copy with tensors
    re-pointed: big tensors (and tensors already external) to ``location`` when ``use_external``,
    everything inline otherwise. Not-loaded tensors are read from ``source_dir``.
    """
    detached = {} if detached is None else detached
    marked = any(_uses_external_data(t) for t in _iter_tensors(model))
    if not use_external and not marked:
        return model
    work = model
    if not consume:
        work = onnx.ModelProto()
        work.CopyFrom(model)
    out = open(data_path, "wb") if use_external else None
    try:
        for tensor in _iter_tensors(work):
            external = _uses_external_data(tensor)
            if external and not tensor.HasField("raw_data") and _location(tensor) == DETACHED_LOCATION:
                source = detached.pop(tensor.name)
                data = _detached_bytes(source)
                if out is not None:
                    start = _align(out, data.nbytes)
                    out.write(data)
                    _point_to(tensor, location, start, data.nbytes)
                else:
                    tensor.raw_data = data.tobytes()
                    _make_inline(tensor)
                del source, data
                continue
            if external and not tensor.HasField("raw_data"):
                info = external_data_helper.ExternalDataInfo(tensor)
                src = os.path.join(os.fspath(source_dir), info.location)
                offset = int(info.offset or 0)
                length = int(info.length) if info.length else None
                if out is not None:
                    start = _align(out, length)
                    n = _copy_range(src, offset, length, out)
                    _point_to(tensor, location, start, n)
                else:
                    tensor.raw_data = _read_range(src, offset, length)
                    _make_inline(tensor)
                continue
            if not tensor.HasField("raw_data"):
                if external:
                    _make_inline(tensor)
                continue
            if out is None:
                if external:
                    _make_inline(tensor)
                continue
            nbytes = _tensor_nbytes(tensor)
            if not external and nbytes is not None and nbytes < EXTERNAL_TENSOR_MIN_BYTES:
                continue
            data = tensor.raw_data
            if not external and len(data) < EXTERNAL_TENSOR_MIN_BYTES:
                continue
            start = _align(out, len(data))
            out.write(data)
            tensor.ClearField("raw_data")
            _point_to(tensor, location, start, len(data))
            del data
    finally:
        if out is not None:
            out.close()
    return work


def _detached_bytes(source) -> memoryview:
    """The raw (little-endian) bytes of a detached array or TensorProto, without copying an array."""
    if isinstance(source, onnx.TensorProto):
        return memoryview(source.raw_data)
    import numpy as np

    array = np.ascontiguousarray(source)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return memoryview(array.reshape(-1).view(np.uint8))


def _align(out, length: Optional[int]) -> int:
    """Pad ``out`` so that a tensor of ``length`` bytes starts aligned; returns the start offset."""
    pos = out.tell()
    if length is None or length >= ALIGN_MIN_BYTES:
        aligned = -(-pos // ALIGNMENT) * ALIGNMENT
        if aligned != pos:
            out.write(b"\0" * (aligned - pos))
            pos = aligned
    return pos


def _point_to(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Mark ``tensor`` as stored at ``location`` (relative), bytes [offset, offset + length)."""
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


def _make_inline(tensor: onnx.TensorProto) -> None:
    tensor.data_location = onnx.TensorProto.DEFAULT
    del tensor.external_data[:]
