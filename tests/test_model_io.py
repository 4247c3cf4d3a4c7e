"""Tests for deconv2sub.io.model_io: loading, checking and atomic saving of ONNX models."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deconv2sub.errors import InputError, OutputError
from deconv2sub.io import model_io
from deconv2sub.io.model_io import (
    check_model,
    external_data_files,
    load_model,
    model_files,
    model_size_bytes,
    save_model,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def make_model(n: int = 4, seed: int = 0) -> onnx.ModelProto:
    """y = x + w with a float32 weight of n*n elements (n=32 gives a 4 KiB initializer)."""
    w = np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def weight(model: onnx.ModelProto) -> np.ndarray:
    return numpy_helper.to_array(model.graph.initializer[0])


def write(path: pathlib.Path, model: onnx.ModelProto) -> pathlib.Path:
    path.write_bytes(model.SerializeToString())
    return path


def assert_one_line(excinfo, *names) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for name in names:
        assert str(name) in msg, msg


def leftovers(directory: pathlib.Path, *expected: str) -> list:
    """Files in directory other than the expected ones (temp files, partial files)."""
    return sorted(p.name for p in directory.iterdir() if p.name not in expected)


def save_external(tmp_path: pathlib.Path, name: str = "ext.onnx") -> pathlib.Path:
    path = tmp_path / name
    save_model(make_model(32), path, external_data=True)
    return path


# ---------------------------------------------------------------------------- load


def test_load_roundtrip_and_file_untouched(tmp_path):
    model = make_model()
    path = write(tmp_path / "m.onnx", model)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    loaded = load_model(str(path))
    assert loaded == model
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path)


def test_load_directory(tmp_path):
    with pytest.raises(InputError) as ei:
        load_model(tmp_path)
    assert_one_line(ei, tmp_path, "directory")


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "empty")


@pytest.mark.parametrize(
    "content",
    [
        bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
        b"hello world\n",
        b"ir_version: 9\ngraph { name: 'g' }\n",
        b"\x00" * 64,
        b"PK\x03\x04 not a model",
    ],
    ids=["random", "text", "textproto", "zeros", "zip"],
)
def test_load_not_onnx(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "not a valid ONNX model")


def test_load_truncated_every_prefix(tmp_path):
    data = make_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(InputError) as ei:
            load_model(path)
        assert_one_line(ei, path)


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores file permissions")
def test_load_unreadable(tmp_path):
    path = write(tmp_path / "m.onnx", make_model())
    path.chmod(0)
    try:
        with pytest.raises(InputError) as ei:
            load_model(path)
        assert_one_line(ei, path, "permission denied")
    finally:
        path.chmod(0o644)


def test_load_permission_error_simulated(tmp_path, monkeypatch):
    """Runs as root too: the read itself fails with PermissionError."""
    path = write(tmp_path / "m.onnx", make_model())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(model_io, "open", denied, raising=False)
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "permission denied")


def test_load_missing_external_data(tmp_path):
    path = save_external(tmp_path)
    data = tmp_path / "ext.onnx.data"
    data.unlink()
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, data, "missing")
    # Without loading the data the model itself still loads.
    assert load_model(path, load_external_data=False).graph.initializer[0].name == "w"


def test_load_bad_external_data(tmp_path):
    path = save_external(tmp_path)
    (tmp_path / "ext.onnx.data").write_bytes(b"short")
    with pytest.raises(InputError) as ei:
        load_model(path)
    assert_one_line(ei, path, "ext.onnx.data")


def test_external_data_files_and_sizes(tmp_path):
    path = save_external(tmp_path)
    data = (tmp_path / "ext.onnx.data").resolve()
    assert external_data_files(load_model(path, load_external_data=False), tmp_path) == [data]
    assert external_data_files(load_model(path), tmp_path) == []  # data now in memory
    assert model_files(path) == [path.resolve(), data]
    assert model_size_bytes(path) == path.stat().st_size + data.stat().st_size == (
        path.stat().st_size + 32 * 32 * 4
    )
    inline = write(tmp_path / "inline.onnx", make_model())
    assert model_files(inline) == [inline.resolve()]
    assert model_size_bytes(inline) == inline.stat().st_size


def test_model_size_bytes_missing(tmp_path):
    with pytest.raises(InputError) as ei:
        model_size_bytes(tmp_path / "nope.onnx")
    assert_one_line(ei, tmp_path / "nope.onnx")


# --------------------------------------------------------------------------- check


def test_check_model_ok():
    check_model(make_model())


def test_check_model_invalid():
    model = make_model()
    model.graph.node[0].input[1] = "undefined_tensor"
    with pytest.raises(InputError) as ei:
        check_model(model, what="rewritten model")
    assert_one_line(ei)
    assert str(ei.value).startswith("rewritten model is not a valid ONNX model: ")


def test_check_model_shape_inference_error():
    model = make_model()
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(InputError):
        check_model(model)


def test_check_large_model_fallback(monkeypatch):
    """Models over the protobuf limit are checked through a skeleton file."""
    monkeypatch.setattr(onnx.checker, "MAXIMUM_PROTOBUF", 100)
    model = make_model(32)
    before = model.SerializeToString()
    check_model(model)
    assert model.SerializeToString() == before
    model.graph.node[0].input[1] = "undefined_tensor"
    with pytest.raises(InputError) as ei:
        check_model(model)
    assert_one_line(ei)


# ---------------------------------------------------------------------------- save


def test_save_roundtrip(tmp_path):
    model = make_model()
    path = tmp_path / "out.onnx"
    save_model(model, str(path))
    assert onnx.load(path) == model
    assert leftovers(tmp_path, "out.onnx") == []


def test_save_refuses_existing_without_force(tmp_path):
    path = write(tmp_path / "out.onnx", make_model(seed=1))
    before = path.read_bytes()
    with pytest.raises(OutputError) as ei:
        save_model(make_model(seed=2), path)
    assert_one_line(ei, path, "--force")
    assert path.read_bytes() == before


def test_save_force_overwrites(tmp_path):
    path = write(tmp_path / "out.onnx", make_model(seed=1))
    new = make_model(seed=2)
    save_model(new, path, force=True)
    np.testing.assert_array_equal(weight(onnx.load(path)), weight(new))
    assert leftovers(tmp_path, "out.onnx") == []


def test_save_refuses_protected_even_with_force(tmp_path):
    path = write(tmp_path / "in.onnx", make_model(seed=1))
    before = path.read_bytes()
    for target in (path, tmp_path / "." / "in.onnx"):
        with pytest.raises(OutputError) as ei:
            save_model(make_model(seed=2), target, force=True, protect=[path])
        assert_one_line(ei, "refusing to overwrite the input model")
    assert path.read_bytes() == before


def test_save_refuses_protected_via_symlink(tmp_path):
    path = write(tmp_path / "in.onnx", make_model(seed=1))
    link = tmp_path / "link.onnx"
    link.symlink_to(path)
    with pytest.raises(OutputError) as ei:
        save_model(make_model(seed=2), link, force=True, protect=[path])
    assert_one_line(ei, link, "refusing")


def test_save_refuses_protected_external_data(tmp_path):
    """The output's data file must not clobber the input's external data file."""
    save_external(tmp_path, "y.onnx")
    src = tmp_path / "in.onnx"
    (tmp_path / "y.onnx").rename(src)  # in.onnx keeps its data in y.onnx.data
    protect = model_files(src)
    data_before = (tmp_path / "y.onnx.data").read_bytes()
    with pytest.raises(OutputError) as ei:
        save_model(make_model(32), tmp_path / "y.onnx", force=True, external_data=True,
                   protect=protect)
    assert_one_line(ei, tmp_path / "y.onnx.data", "refusing")
    assert (tmp_path / "y.onnx.data").read_bytes() == data_before
    assert leftovers(tmp_path, "in.onnx", "y.onnx.data") == []


def test_save_missing_parent(tmp_path):
    path = tmp_path / "no" / "such" / "out.onnx"
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), path)
    assert_one_line(ei, path, "does not exist")


def test_save_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "out.onnx"
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), path)
    assert_one_line(ei, path)


def test_save_path_is_directory(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), tmp_path / "d", force=True)
    assert_one_line(ei, tmp_path / "d", "directory")


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores file permissions")
def test_save_readonly_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError) as ei:
            save_model(make_model(), ro / "out.onnx")
        assert_one_line(ei, ro / "out.onnx", "not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_save_readonly_dir_simulated(tmp_path, monkeypatch):
    """Runs as root too: the folder reports no write access."""
    monkeypatch.setattr(model_io.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), tmp_path / "out.onnx")
    assert_one_line(ei, tmp_path / "out.onnx", "not writable")
    assert leftovers(tmp_path) == []


def test_save_permission_error_simulated(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(model_io.tempfile, "mkdtemp", denied)
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), tmp_path / "out.onnx")
    assert_one_line(ei, tmp_path / "out.onnx", "permission denied")
    assert leftovers(tmp_path) == []


def _failing_save(exc):
    """A stand-in for onnx.save_model that writes half a file, then raises exc."""

    def fake(proto, f, *args, **kwargs):
        data = proto.SerializeToString()
        with open(f, "wb") as out:
            out.write(data[: len(data) // 2])
        raise exc

    return fake


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), OSError(28, "No space left")])
@pytest.mark.parametrize("external", [False, True])
def test_save_failure_leaves_nothing(tmp_path, monkeypatch, exc, external):
    monkeypatch.setattr(onnx, "save_model", _failing_save(exc))
    path = tmp_path / "out.onnx"
    with pytest.raises(OutputError) as ei:
        save_model(make_model(32), path, external_data=external)
    assert_one_line(ei, path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("external", [False, True])
def test_save_failure_keeps_existing_target(tmp_path, monkeypatch, external):
    path = write(tmp_path / "out.onnx", make_model(seed=1))
    before = path.read_bytes()
    monkeypatch.setattr(onnx, "save_model", _failing_save(RuntimeError("boom")))
    with pytest.raises(OutputError):
        save_model(make_model(32, seed=2), path, force=True, external_data=external)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "out.onnx") == []


@pytest.mark.parametrize("preexisting", [False, True])
def test_save_keyboard_interrupt(tmp_path, monkeypatch, preexisting):
    path = tmp_path / "out.onnx"
    if preexisting:
        write(path, make_model(seed=1))
    before = path.read_bytes() if preexisting else None
    monkeypatch.setattr(onnx, "save_model", _failing_save(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_model(make_model(seed=2), path, force=True)
    assert (path.read_bytes() if path.exists() else None) == before
    assert leftovers(tmp_path, "out.onnx") == []


def test_save_interrupt_during_replace(tmp_path, monkeypatch):
    """A Ctrl-C right before the final rename leaves the old target and no temp files."""
    path = write(tmp_path / "out.onnx", make_model(seed=1))
    before = path.read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(make_model(seed=2), path, force=True)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "out.onnx") == []


def test_save_external_roundtrip(tmp_path):
    model = make_model(32)  # 4 KiB initializer
    before = model.SerializeToString()
    path = tmp_path / "out.onnx"
    save_model(model, path, external_data=True)

    assert leftovers(tmp_path, "out.onnx", "out.onnx.data") == []
    assert (tmp_path / "out.onnx.data").stat().st_size == 32 * 32 * 4
    raw = onnx.load(path, load_external_data=False).graph.initializer[0]
    assert raw.data_location == TensorProto.EXTERNAL
    location = {e.key: e.value for e in raw.external_data}["location"]
    assert location == "out.onnx.data" and not os.path.isabs(location)

    np.testing.assert_array_equal(weight(onnx.load(path)), weight(model))
    np.testing.assert_array_equal(weight(load_model(path)), weight(model))
    # The caller's model is untouched: data still inline.
    assert model.SerializeToString() == before
    assert model.graph.initializer[0].HasField("raw_data")
    assert model.graph.initializer[0].data_location == TensorProto.DEFAULT


def test_save_external_from_other_cwd(tmp_path, monkeypatch):
    """onnx's own save_as_external_data trips over a same-named file in the CWD."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "out.onnx.data").write_bytes(b"unrelated")
    save_model(make_model(32), tmp_path / "sub" / "out.onnx", external_data=True)
    np.testing.assert_array_equal(
        weight(onnx.load(tmp_path / "sub" / "out.onnx")), weight(make_model(32))
    )


def test_save_external_refuses_existing_data_file(tmp_path):
    (tmp_path / "out.onnx.data").write_bytes(b"keep me")
    with pytest.raises(OutputError) as ei:
        save_model(make_model(32), tmp_path / "out.onnx", external_data=True)
    assert_one_line(ei, "out.onnx.data", "--force")
    assert (tmp_path / "out.onnx.data").read_bytes() == b"keep me"
    assert not (tmp_path / "out.onnx").exists()


def test_save_external_force_overwrite(tmp_path):
    path = save_external(tmp_path, "out.onnx")
    new = make_model(32, seed=5)
    save_model(new, path, force=True, external_data=True)
    np.testing.assert_array_equal(weight(load_model(path)), weight(new))
    assert leftovers(tmp_path, "out.onnx", "out.onnx.data") == []


def test_save_external_automatic(tmp_path, monkeypatch):
    save_model(make_model(32), tmp_path / "small.onnx")
    assert not (tmp_path / "small.onnx.data").exists()
    monkeypatch.setattr(model_io, "EXTERNAL_DATA_THRESHOLD", 1000)
    save_model(make_model(32), tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").exists()
    np.testing.assert_array_equal(weight(load_model(tmp_path / "big.onnx")), weight(make_model(32)))


def test_save_marked_external_inline(tmp_path):
    """external_data=False inlines tensors that carry (stale) external markers."""
    model = make_model(32)
    onnx.external_data_helper.set_external_data(model.graph.initializer[0], "elsewhere.data")
    before = model.SerializeToString()
    save_model(model, tmp_path / "out.onnx", external_data=False)
    assert leftovers(tmp_path, "out.onnx") == []
    loaded = onnx.load(tmp_path / "out.onnx", load_external_data=False)
    assert loaded.graph.initializer[0].data_location == TensorProto.DEFAULT
    np.testing.assert_array_equal(weight(loaded), weight(make_model(32)))
    assert model.SerializeToString() == before


def test_save_refuses_unloaded_external_data(tmp_path):
    src = save_external(tmp_path, "in.onnx")
    model = load_model(src, load_external_data=False)
    with pytest.raises(OutputError) as ei:
        save_model(model, tmp_path / "out.onnx")
    assert_one_line(ei, tmp_path / "out.onnx", "'w'")
    assert not (tmp_path / "out.onnx").exists()


# ------------------------------------------------------------- staging, streaming, detached data


def test_stage_commit_and_discard(tmp_path):
    from deconv2sub.io.model_io import stage_model

    staged = stage_model(make_model(32), tmp_path / "out.onnx", external_data=True)
    assert os.path.isfile(staged.model_path) and os.path.isfile(staged.data_path)
    assert onnx.load(staged.model_path)  # loadable (data beside it) before it is in place
    assert not (tmp_path / "out.onnx").exists()
    staged.discard()
    assert leftovers(tmp_path) == []
    with stage_model(make_model(32), tmp_path / "out.onnx", external_data=True) as staged:
        staged.commit()
    assert leftovers(tmp_path, "out.onnx", "out.onnx.data") == []
    np.testing.assert_array_equal(weight(load_model(tmp_path / "out.onnx")), weight(make_model(32)))


def test_stage_streams_unloaded_external_data(tmp_path):
    """Tensors not loaded are copied from their file in source_dir, externally or inline."""
    src = save_external(tmp_path, "in.onnx")
    skeleton = load_model(src, load_external_data=False)
    for external, name in ((True, "a.onnx"), (False, "b.onnx")):
        (tmp_path / "out").mkdir(exist_ok=True)
        save_model(skeleton, tmp_path / "out" / name, external_data=external, source_dir=tmp_path)
        np.testing.assert_array_equal(weight(load_model(tmp_path / "out" / name)), weight(make_model(32)))
    assert sorted(os.listdir(tmp_path / "out")) == ["a.onnx", "a.onnx.data", "b.onnx"]
    assert skeleton.graph.initializer[0].data_location == TensorProto.EXTERNAL  # not consumed


def test_stage_consume_drops_in_memory_data(tmp_path):
    from deconv2sub.io.model_io import stage_model

    model = make_model(64)
    with stage_model(model, tmp_path / "out.onnx", external_data=True, consume=True) as staged:
        staged.commit()
    init = model.graph.initializer[0]
    assert not init.HasField("raw_data") and init.data_location == TensorProto.EXTERNAL
    np.testing.assert_array_equal(weight(load_model(tmp_path / "out.onnx")), weight(make_model(64)))


def test_stage_detached_arrays(tmp_path):
    from deconv2sub.io.model_io import DETACHED_LOCATION, _point_to, stage_model

    w = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    model = make_model(64)
    stub = model.graph.initializer[0]
    stub.ClearField("raw_data")
    _point_to(stub, DETACHED_LOCATION, 0, w.nbytes)
    detached = {"w": w}
    for external, name in ((True, "a.onnx"), (False, "b.onnx")):
        work = onnx.ModelProto()
        work.CopyFrom(model)
        with stage_model(work, tmp_path / name, external_data=external, detached=dict(detached)) as staged:
            staged.commit()
        np.testing.assert_array_equal(weight(load_model(tmp_path / name)), w)
    with pytest.raises(OutputError) as ei:
        save_model(model, tmp_path / "c.onnx", detached={})
    assert_one_line(ei, "'w'", "missing")


def test_external_data_is_aligned_for_mmap(tmp_path, monkeypatch):
    monkeypatch.setattr(model_io, "ALIGN_MIN_BYTES", 1000)
    model = make_model(32)
    model.graph.initializer.append(numpy_helper.from_array(np.ones(300, np.float32), "pad"))  # 1200 bytes
    save_model(model, tmp_path / "out.onnx", external_data=True)
    offsets = [int({e.key: e.value for e in t.external_data}["offset"])
               for t in onnx.load(tmp_path / "out.onnx", load_external_data=False).graph.initializer]
    assert all(o % model_io.ALIGNMENT == 0 for o in offsets)


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess_pid_that_exited()
    stale = tmp_path / f".out.onnx.tmp-{dead}-abc"
    stale.mkdir()
    (stale / "out.onnx.data").write_bytes(b"partial")
    alive = tmp_path / f".out.onnx.tmp-{os.getppid()}-xyz"  # a live process: not touched
    alive.mkdir()
    save_model(make_model(), tmp_path / "out.onnx")
    assert not stale.exists() and alive.exists()


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_overwrite_external_target_removes_old_model_first(tmp_path, monkeypatch):
    """Between the two renames the old model must not see the new data: it is removed before them."""
    path = save_external(tmp_path, "out.onnx")
    seen = []
    real_replace = model_io.os.replace

    def spy(src, dst):
        seen.append((os.path.basename(str(dst)), os.path.exists(path)))
        return real_replace(src, dst)

    monkeypatch.setattr(model_io.os, "replace", spy)
    save_model(make_model(32, seed=3), path, force=True, external_data=True)
    assert seen == [("out.onnx.data", False), ("out.onnx", False)]
    np.testing.assert_array_equal(weight(load_model(path)), weight(make_model(32, seed=3)))


def test_verify_external_data(tmp_path):
    from deconv2sub.io.model_io import verify_external_data

    path = save_external(tmp_path)
    skeleton = load_model(path, load_external_data=False)
    verify_external_data(skeleton, path)
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(InputError) as ei:
        verify_external_data(skeleton, path)
    assert_one_line(ei, data, "too short")
    data.unlink()
    with pytest.raises(InputError) as ei:
        verify_external_data(skeleton, path)
    assert_one_line(ei, data, "missing")


def test_check_model_by_path_reads_no_external_data(tmp_path):
    path = save_external(tmp_path)
    (tmp_path / "ext.onnx.data").write_bytes(b"\0" * (32 * 32 * 4))  # right size, any content
    check_model(path)
    broken = make_model()
    broken.graph.node[0].input[1] = "nope"
    with pytest.raises(InputError) as ei:
        check_model(write(tmp_path / "b.onnx", broken), "the input model")
    assert_one_line(ei)


def test_skeleton_keeps_dims_and_small_tensors():
    from deconv2sub.io.model_io import skeleton

    model = make_model(64)  # 16 KiB weight
    model.graph.initializer.append(numpy_helper.from_array(np.arange(3, dtype=np.int64), "small"))
    skel, total = skeleton(model, min_bytes=1024)
    big, small = skel.graph.initializer
    assert not big.HasField("raw_data") and list(big.dims) == [64, 64] and total == 64 * 64 * 4
    assert numpy_helper.to_array(small).tolist() == [0, 1, 2]
    assert (skel.ir_version, skel.graph.node[0].op_type) == (model.ir_version, "Add")
    assert model.graph.initializer[0].HasField("raw_data")  # the model itself is untouched
