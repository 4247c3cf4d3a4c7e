"""Tests for deconv2sub.io.save and deconv2sub.io.data_file: checked, staged, atomic saving."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from io_cases import (
    IS_ROOT,
    assert_one_line,
    leftovers,
    make_model,
    save_external,
    weight,
    write,
)
from onnx import TensorProto, numpy_helper

from deconv2sub.errors import OutputError
from deconv2sub.io import data_file, save
from deconv2sub.io.load import load_model, model_files
from deconv2sub.io.save import check_output_path, needs_external_data, save_model, stage_model
from deconv2sub.io.tensors import DETACHED_LOCATION, point_to


def test_save_roundtrip(tmp_path):
    """A saved model loads back equal, with nothing left beside it."""
    model = make_model()
    path = tmp_path / "out.onnx"
    save_model(model, str(path))
    assert onnx.load(path) == model
    assert leftovers(tmp_path, "out.onnx") == []


def test_save_refuses_existing_without_force(tmp_path):
    """An existing target is kept and named, with the --force hint."""
    path = write(tmp_path / "out.onnx", make_model(seed=1))
    before = path.read_bytes()
    with pytest.raises(OutputError) as ei:
        save_model(make_model(seed=2), path)
    assert_one_line(ei, path, "--force")
    assert path.read_bytes() == before


def test_save_force_overwrites(tmp_path):
    """With force the target is replaced, leaving no temporaries."""
    path = write(tmp_path / "out.onnx", make_model(seed=1))
    new = make_model(seed=2)
    save_model(new, path, force=True)
    np.testing.assert_array_equal(weight(onnx.load(path)), weight(new))
    assert leftovers(tmp_path, "out.onnx") == []


def test_save_refuses_protected_even_with_force(tmp_path):
    """The input model is never overwritten, under any spelling."""
    path = write(tmp_path / "in.onnx", make_model(seed=1))
    before = path.read_bytes()
    for target in (path, tmp_path / "." / "in.onnx"):
        with pytest.raises(OutputError) as ei:
            save_model(make_model(seed=2), target, force=True, protect=[path])
        assert_one_line(ei, "refusing to overwrite the input model")
    assert path.read_bytes() == before


def test_save_refuses_protected_via_symlink(tmp_path):
    """A symbolic link to the input model is refused too."""
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
    """A missing output folder is named."""
    path = tmp_path / "no" / "such" / "out.onnx"
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), path)
    assert_one_line(ei, path, "does not exist")


def test_save_parent_is_a_file(tmp_path):
    """An output "folder" that is a file is refused in one line."""
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "out.onnx"
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), path)
    assert_one_line(ei, path)


def test_save_path_is_directory(tmp_path):
    """A directory as target is refused, even with force."""
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), tmp_path / "d", force=True)
    assert_one_line(ei, tmp_path / "d", "directory")


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores file permissions")
def test_save_readonly_dir(tmp_path):
    """A read-only folder: not writable, nothing written."""
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
    monkeypatch.setattr(save.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError) as ei:
        save_model(make_model(), tmp_path / "out.onnx")
    assert_one_line(ei, tmp_path / "out.onnx", "not writable")
    assert leftovers(tmp_path) == []


def test_save_permission_error_simulated(tmp_path, monkeypatch):
    """A PermissionError while staging: permission denied, nothing left."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(save.tempfile, "mkdtemp", denied)
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
    """A failing write leaves no file, inline or with external data."""
    monkeypatch.setattr(onnx, "save_model", _failing_save(exc))
    path = tmp_path / "out.onnx"
    with pytest.raises(OutputError) as ei:
        save_model(make_model(32), path, external_data=external)
    assert_one_line(ei, path)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("external", [False, True])
def test_save_failure_keeps_existing_target(tmp_path, monkeypatch, external):
    """A failing overwrite keeps the old target intact."""
    path = write(tmp_path / "out.onnx", make_model(seed=1))
    before = path.read_bytes()
    monkeypatch.setattr(onnx, "save_model", _failing_save(RuntimeError("boom")))
    with pytest.raises(OutputError):
        save_model(make_model(32, seed=2), path, force=True, external_data=external)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "out.onnx") == []


@pytest.mark.parametrize("preexisting", [False, True])
def test_save_keyboard_interrupt(tmp_path, monkeypatch, preexisting):
    """Ctrl-C while writing passes through and leaves the old state."""
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

    monkeypatch.setattr(save.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(make_model(seed=2), path, force=True)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "out.onnx") == []


def test_save_external_roundtrip(tmp_path):
    """External data goes to OUT.data (relative), the caller's model untouched."""
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
    """Onnx's own save_as_external_data trips over a same-named file in the CWD."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "out.onnx.data").write_bytes(b"unrelated")
    save_model(make_model(32), tmp_path / "sub" / "out.onnx", external_data=True)
    np.testing.assert_array_equal(
        weight(onnx.load(tmp_path / "sub" / "out.onnx")), weight(make_model(32))
    )


def test_save_external_refuses_existing_data_file(tmp_path):
    """An existing OUT.data is not overwritten without force."""
    (tmp_path / "out.onnx.data").write_bytes(b"keep me")
    with pytest.raises(OutputError) as ei:
        save_model(make_model(32), tmp_path / "out.onnx", external_data=True)
    assert_one_line(ei, "out.onnx.data", "--force")
    assert (tmp_path / "out.onnx.data").read_bytes() == b"keep me"
    assert not (tmp_path / "out.onnx").exists()


def test_save_external_force_overwrite(tmp_path):
    """With force both files of an external-data output are replaced."""
    path = save_external(tmp_path, "out.onnx")
    new = make_model(32, seed=5)
    save_model(new, path, force=True, external_data=True)
    np.testing.assert_array_equal(weight(load_model(path)), weight(new))
    assert leftovers(tmp_path, "out.onnx", "out.onnx.data") == []


def test_save_external_automatic(tmp_path, monkeypatch):
    """Small models are saved inline; above the threshold with external data."""
    save_model(make_model(32), tmp_path / "small.onnx")
    assert not (tmp_path / "small.onnx.data").exists()
    monkeypatch.setattr(save, "EXTERNAL_DATA_THRESHOLD", 1000)
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
    """Tensors whose data was not loaded need a source_dir."""
    src = save_external(tmp_path, "in.onnx")
    model = load_model(src, load_external_data=False)
    with pytest.raises(OutputError) as ei:
        save_model(model, tmp_path / "out.onnx")
    assert_one_line(ei, tmp_path / "out.onnx", "'w'")
    assert not (tmp_path / "out.onnx").exists()


def test_stage_commit_and_discard(tmp_path):
    """A staged model is complete beside its target, then committed or discarded."""
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
        loaded = load_model(tmp_path / "out" / name)
        np.testing.assert_array_equal(weight(loaded), weight(make_model(32)))
    assert sorted(os.listdir(tmp_path / "out")) == ["a.onnx", "a.onnx.data", "b.onnx"]
    assert skeleton.graph.initializer[0].data_location == TensorProto.EXTERNAL  # not consumed


def test_stage_consume_drops_in_memory_data(tmp_path):
    """With consume the model's tensors point to the new file, data dropped."""
    model = make_model(64)
    with stage_model(model, tmp_path / "out.onnx", external_data=True, consume=True) as staged:
        staged.commit()
    init = model.graph.initializer[0]
    assert not init.HasField("raw_data") and init.data_location == TensorProto.EXTERNAL
    np.testing.assert_array_equal(weight(load_model(tmp_path / "out.onnx")), weight(make_model(64)))


def test_stage_detached_arrays(tmp_path):
    """Detached arrays are written straight into the output; a missing one is named."""
    w = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    model = make_model(64)
    stub = model.graph.initializer[0]
    stub.ClearField("raw_data")
    point_to(stub, DETACHED_LOCATION, 0, w.nbytes)
    detached = {"w": w}
    for external, name in ((True, "a.onnx"), (False, "b.onnx")):
        work = onnx.ModelProto()
        work.CopyFrom(model)
        with stage_model(work, tmp_path / name, external_data=external,
                         detached=dict(detached)) as staged:
            staged.commit()
        np.testing.assert_array_equal(weight(load_model(tmp_path / name)), w)
    with pytest.raises(OutputError) as ei:
        save_model(model, tmp_path / "c.onnx", detached={})
    assert_one_line(ei, "'w'", "missing")


def test_external_data_is_aligned_for_mmap(tmp_path, monkeypatch):
    """Big tensors start at a multiple of ALIGNMENT in the data file."""
    monkeypatch.setattr(data_file, "ALIGN_MIN_BYTES", 1000)
    model = make_model(32)
    pad = numpy_helper.from_array(np.ones(300, np.float32), "pad")  # 1200 bytes
    model.graph.initializer.append(pad)
    save_model(model, tmp_path / "out.onnx", external_data=True)
    saved = onnx.load(tmp_path / "out.onnx", load_external_data=False)
    offsets = [int({e.key: e.value for e in t.external_data}["offset"])
               for t in saved.graph.initializer]
    assert all(o % data_file.ALIGNMENT == 0 for o in offsets)


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    """Temporaries of dead processes go; a live one's stay."""
    dead = subprocess_pid_that_exited()
    stale = tmp_path / f".out.onnx.tmp-{dead}-abc"
    stale.mkdir()
    (stale / "out.onnx.data").write_bytes(b"partial")
    alive = tmp_path / f".out.onnx.tmp-{os.getppid()}-xyz"  # a live process: not touched
    alive.mkdir()
    save_model(make_model(), tmp_path / "out.onnx")
    assert not stale.exists() and alive.exists()


def subprocess_pid_that_exited() -> int:
    """The id of a process that has exited."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_overwrite_external_target_removes_old_model_first(tmp_path, monkeypatch):
    """Between the two renames the old model must not see the new data: it is removed first."""
    path = save_external(tmp_path, "out.onnx")
    seen = []
    real_replace = save.os.replace

    def spy(src, dst):
        seen.append((os.path.basename(str(dst)), os.path.exists(path)))
        return real_replace(src, dst)

    monkeypatch.setattr(save.os, "replace", spy)
    save_model(make_model(32, seed=3), path, force=True, external_data=True)
    assert seen == [("out.onnx.data", False), ("out.onnx", False)]
    np.testing.assert_array_equal(weight(load_model(path)), weight(make_model(32, seed=3)))


# ------------------------------------------------------------------ check_output_path


@pytest.mark.parametrize("spelling", ["same", "dot", "symlink", "hardlink"])
@pytest.mark.parametrize("force", [False, True])
def test_check_output_path_refuses_the_input_under_any_spelling(tmp_path, spelling, force):
    """The input (or its data file) is refused first, with or without force, naming it."""
    src = write(tmp_path / "in.onnx", make_model())
    target = {"same": src, "dot": tmp_path / "." / "in.onnx", "symlink": tmp_path / "link.onnx",
              "hardlink": tmp_path / "hard.onnx"}[spelling]
    if spelling == "symlink":
        target.symlink_to(src)
    elif spelling == "hardlink":
        os.link(src, target)
    with pytest.raises(OutputError) as ei:
        check_output_path(target, force, protect=[src])
    assert_one_line(ei, "refusing to overwrite the input model", target)
    assert "--force" not in str(ei.value)


def test_check_output_path_refuses_the_inputs_data_file(tmp_path):
    """With data_file, OUT.data must not be one of the protected files either."""
    src = save_external(tmp_path, "y.onnx")
    (tmp_path / "y.onnx").rename(tmp_path / "in.onnx")  # in.onnx keeps its data in y.onnx.data
    protect = model_files(tmp_path / "in.onnx")
    check_output_path(src, force=True, protect=protect)  # no data file: y.onnx itself is free
    with pytest.raises(OutputError) as ei:
        check_output_path(src, force=True, protect=protect, data_file=True)
    assert_one_line(ei, tmp_path / "y.onnx.data", "refusing")


def test_check_output_path_every_other_refusal(tmp_path, monkeypatch):
    """Directory, missing or non-folder parent, existing file or data file, dangling link."""
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    write(tmp_path / "exists.onnx", make_model())
    (tmp_path / "sidecar.onnx.data").write_bytes(b"x")
    (tmp_path / "dangling.onnx").symlink_to(tmp_path / "nowhere")
    cases = [
        (tmp_path / "d", True, False, "is a directory"),
        (tmp_path / "no" / "out.onnx", True, False, "does not exist"),
        (tmp_path / "f" / "out.onnx", True, False, "is not a folder"),
        (tmp_path / "exists.onnx", False, False, "exists; pass --force"),
        (tmp_path / "sidecar.onnx", False, True, "exists; pass --force"),
        (tmp_path / "dangling.onnx", False, False, "exists; pass --force"),
    ]
    for path, force, data, words in cases:
        with pytest.raises(OutputError) as ei:
            check_output_path(path, force, data_file=data)
        assert_one_line(ei, words)
    for path in (tmp_path / "exists.onnx", tmp_path / "sidecar.onnx", tmp_path / "new.onnx"):
        check_output_path(path, force=True, data_file=True)
    check_output_path(tmp_path / "sidecar.onnx")  # its data file only matters when it gets one
    monkeypatch.setattr(save.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError) as ei:
        check_output_path(tmp_path / "new.onnx", force=True)
    assert_one_line(ei, tmp_path, "not writable")


# ------------------------------------------------------------- the external-data size rule


def _detached_model(n: int = 64):
    """:func:`make_model` whose weight is detached (held apart); returns (model, detached dict)."""
    model = make_model(n)
    w = weight(model)
    stub = model.graph.initializer[0]
    stub.ClearField("raw_data")
    point_to(stub, DETACHED_LOCATION, 0, w.nbytes)
    return model, {"w": w}


def test_detached_tensors_alone_do_not_make_external_data(tmp_path, monkeypatch):
    """Data held apart in memory is saved inline unless the whole would exceed the threshold.

    The rewrite detaches every new weight of 1 MiB or more; a model whose input had no external
    data was saved with a .data file (seen with a 2 MiB HiFi-GAN ConvTranspose).
    """
    model, detached = _detached_model()
    assert not needs_external_data(model)
    save_model(model, tmp_path / "small.onnx", detached=dict(detached))
    assert leftovers(tmp_path, "small.onnx") == []
    np.testing.assert_array_equal(weight(load_model(tmp_path / "small.onnx")), detached["w"])
    # The detached bytes count towards the size: 16 KiB of them cross a 10 KB threshold.
    assert model.ByteSize() < 10_000 <= model.ByteSize() + 64 * 64 * 4
    monkeypatch.setattr(save, "EXTERNAL_DATA_THRESHOLD", 10_000)
    assert needs_external_data(model)
    save_model(model, tmp_path / "big.onnx", detached=dict(detached))
    assert (tmp_path / "big.onnx.data").exists()
    np.testing.assert_array_equal(weight(load_model(tmp_path / "big.onnx")), detached["w"])


def test_tensors_marked_external_keep_external_data(tmp_path):
    """A tensor still in a data file, or marked as if, keeps the external layout."""
    src = save_external(tmp_path, "in.onnx")
    assert needs_external_data(load_model(src, load_external_data=False))
    assert not needs_external_data(load_model(src))  # loading clears the markers
    marked = make_model(32)
    onnx.external_data_helper.set_external_data(marked.graph.initializer[0], "elsewhere.data")
    assert needs_external_data(marked)  # data in memory, marker kept
    assert not needs_external_data(make_model(32))
