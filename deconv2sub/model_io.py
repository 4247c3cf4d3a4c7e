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
import tempfile
from typing import Iterable, Iterator, List, Optional, Union

import onnx
from onnx import external_data_helper

from .errors import InputError, OutputError

PathLike = Union[str, "os.PathLike[str]"]

#: Above this serialized size a model is saved with external data (protobuf caps at 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
#: Tensors whose raw data has at least this many bytes go to the external data file.
EXTERNAL_TENSOR_MIN_BYTES = 1024


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
    base_dir = p.parent
    for tensor in _iter_tensors(model):
        if not _uses_external_data(tensor):
            continue
        location = _location(tensor)
        data_path = base_dir / location
        if not location or not data_path.is_file():
            raise InputError(
                f"{p}: external data file {data_path} (tensor {tensor.name!r}) is missing"
            )
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(base_dir))
        except Exception as exc:  # noqa: BLE001
            raise InputError(
                f"{p}: cannot load external data of tensor {tensor.name!r} from {data_path}: "
                f"{_first_line(exc)}"
            ) from None


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


def check_model(model: onnx.ModelProto, what: str = "model") -> None:
    """Run the ONNX checker with shape inference; raise :class:`InputError` on failure.

    Models over protobuf's 2 GiB limit cannot be checked in memory; they are checked
    via a temporary skeleton file whose large tensors point at a sparse stub data file.
    """
    try:
        try:
            onnx.checker.check_model(model, full_check=True)
        except ValueError as exc:
            if "too large" not in str(exc):
                raise
            _check_large_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError, InferenceError, ...
        raise InputError(f"{what} is not a valid ONNX model: {_first_line(exc)}") from None


def _check_large_model(model: onnx.ModelProto) -> None:
    """Check a > 2 GiB model by path, with large tensors moved to a sparse stub file."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    offset = 0
    for tensor in _iter_tensors(skeleton):
        if tensor.HasField("raw_data") and len(tensor.raw_data) >= EXTERNAL_TENSOR_MIN_BYTES:
            length = len(tensor.raw_data)
            external_data_helper.set_external_data(tensor, "stub.data", offset, length)
            tensor.ClearField("raw_data")
            offset += length
    with tempfile.TemporaryDirectory(prefix="deconv2sub-check-") as tmp:
        with open(os.path.join(tmp, "stub.data"), "wb") as f:
            f.truncate(offset)  # sparse: no disk space, no data written
        model_path = os.path.join(tmp, "model.onnx")
        with open(model_path, "wb") as f:
            f.write(skeleton.SerializeToString())
        del skeleton
        onnx.checker.check_model(model_path, full_check=True)


# ---------------------------------------------------------------------------- saving


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


def save_model(
    model: onnx.ModelProto,
    path: PathLike,
    *,
    force: bool = False,
    external_data: Optional[bool] = None,
    protect: Iterable[PathLike] = (),
) -> None:
    """Save ``model`` to ``path`` atomically; the caller's ``model`` is not modified.

    The files are written into a fresh temporary folder beside ``path``, fsynced and
    then moved into place with :func:`os.replace` (external data file first, model
    file last), so an error or Ctrl-C leaves no partial file and an existing target
    intact. ``external_data=None`` picks external data automatically (model near the
    2 GiB protobuf limit, or tensors already marked external); external data goes to
    ``<file name>.data`` beside the model with a relative location.

    Raises :class:`OutputError` if the target exists (without ``force``), is one of
    the ``protect`` files (always), is a directory, or its folder is missing or not
    writable, and for any write failure.
    """
    target = pathlib.Path(os.fspath(path))
    parent = target.parent
    data_name = target.name + ".data"
    use_external = _needs_external_data(model) if external_data is None else external_data

    for t in _iter_tensors(model):
        if _uses_external_data(t) and not t.HasField("raw_data"):
            raise OutputError(
                f"cannot write {target}: the data of tensor {t.name!r} is in an external "
                "file that was not loaded"
            )

    targets = [target] + ([parent / data_name] if use_external else [])
    for protected in protect:
        protected = pathlib.Path(os.fspath(protected))
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
        tmp_dir = tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent)
        tmp_model = os.path.join(tmp_dir, target.name)
        tmp_data = os.path.join(tmp_dir, data_name)
        onnx.save_model(_to_save(model, use_external, data_name), tmp_model, format="protobuf")
        if os.path.exists(tmp_data):
            _fsync(tmp_data)
            os.replace(tmp_data, parent / data_name)
        _fsync(tmp_model)
        os.replace(tmp_model, target)
        _fsync_dir(parent)
    except PermissionError:
        raise OutputError(f"cannot write {target}: permission denied") from None
    except Exception as exc:  # noqa: BLE001 - KeyboardInterrupt passes through unwrapped
        raise OutputError(f"cannot write {target}: {_first_line(exc)}") from None
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _to_save(model: onnx.ModelProto, use_external: bool, location: str) -> onnx.ModelProto:
    """The proto to hand to ``onnx.save_model``: ``model`` itself, or a marked-up copy.

    ``onnx.save_model`` writes every tensor marked external (and strips its data in
    place), so whenever markers must be set or cleared we work on a copy. Markers are
    set here rather than with ``save_as_external_data=True`` because onnx then checks
    whether ``location`` exists relative to the *current working directory*.
    """
    marked = any(_uses_external_data(t) for t in _iter_tensors(model))
    if not use_external and not marked:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for tensor in _iter_tensors(copy):
        if not tensor.HasField("raw_data"):
            continue
        if use_external and (
            _uses_external_data(tensor) or len(tensor.raw_data) >= EXTERNAL_TENSOR_MIN_BYTES
        ):
            external_data_helper.set_external_data(tensor, location)
        elif _uses_external_data(tensor):  # keep this one inline
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    return copy
