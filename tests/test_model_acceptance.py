"""Which input models `convert` accepts (issue 12): what ONNX Runtime loads, not only what the ONNX
checker passes; legacy IR version 3 models; external data locations that are refused, with the reason.

Every converted model is checked against ONNX Runtime running the original graph."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from deconv2sub import pipeline
from deconv2sub.cli import main
from deconv2sub.errors import InputError
from deconv2sub.model_io import load_model, save_model, verify_external_data

from builders import assert_equivalent, convtranspose_model

RNG = np.random.default_rng(12)
F = TensorProto.FLOAT


def _w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def convert(*args):
    """`deconv2sub convert ... --json`: (exit code, parsed JSON or None, stderr lines)."""
    r = CliRunner().invoke(main, ["convert", *[str(a) for a in args], "--json"], catch_exceptions=False)
    data = json.loads(r.stdout) if r.exit_code in (0, 1) else None
    return r.exit_code, data, [ln for ln in r.stderr.splitlines() if ln.strip()]


def checker_refuses(model: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception:  # noqa: BLE001
        return True
    return False


# ------------------------------------------------------- 14. external data locations not read


def external_model(tmp_path, location):
    """A model in tmp_path/model/ whose weight's external data location is ``location``; the data
    file itself exists at tmp_path/w.data."""
    folder = tmp_path / "model"
    folder.mkdir()
    model = convtranspose_model([1, 3, 5, 5], _w(3, 2, 16, 16), strides=[2, 2], pads=[1, 1, 1, 1])
    save_model(model, folder / "m.onnx", external_data=True)
    (folder / "m.onnx.data").rename(tmp_path / "w.data")
    stub = onnx.load(folder / "m.onnx", load_external_data=False)
    entry = next(e for e in stub.graph.initializer[0].external_data if e.key == "location")
    entry.value = location(tmp_path) if callable(location) else location
    onnx.save(stub, folder / "m.onnx")
    return folder / "m.onnx"


@pytest.mark.parametrize("case", ["absolute", "parent", "symlink"])
def test_external_data_outside_the_folder_is_refused_saying_why(tmp_path, case):
    if case == "absolute":
        path = external_model(tmp_path, lambda d: str(d / "w.data"))
        why = ["absolute path", "outside the model's folder"]
    elif case == "parent":
        path = external_model(tmp_path, "../w.data")
        why = ["'../w.data'", "outside the model's folder"]
    else:
        path = external_model(tmp_path, "w.data")
        (path.parent / "w.data").symlink_to(tmp_path / "w.data")
        why = ["symbolic link"]
    assert (tmp_path / "w.data").is_file()
    stub = load_model(path, load_external_data=False)
    for attempt in (lambda: load_model(path), lambda: verify_external_data(stub, path)):
        with pytest.raises(InputError) as ei:
            attempt()
        msg = str(ei.value)
        assert "missing" not in msg and "'W'" in msg and all(w in msg for w in why), msg
    code, _, err = convert(path, "-o", tmp_path / "out.onnx")
    assert code == 2 and len(err) == 1 and all(w in err[0] for w in why), err
    assert not (tmp_path / "out.onnx").exists()
