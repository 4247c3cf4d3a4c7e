"""Options that make the result meaningless, default output, input as output, the criterion.

Options that used to be accepted although they make the result meaningless, the default output of
`convert`, the input-as-output refusal and the pass criterion in the summary (issue 12, points 5-8
and 11); the option lists taken from the registries (issue 11). Every refusal is exit 2 with one
line on stderr and nothing written.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from builders import convtranspose_model

from deconv2sub.errors import InputError
from deconv2sub.verify.inputs import parse_input_shapes

RNG = np.random.default_rng(12)


def assert_one_line_error(r, *words):
    """Exit 2 with one line, ``deconv2sub: error: ...``, containing ``words``."""
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("deconv2sub: error:"), r.output
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture()
def model_path(tmp_path):
    """A model with a symbolic batch (so --input-shape applies) and a small rewrite error."""
    m = convtranspose_model(
        ["N", 3, 5, 5],
        RNG.standard_normal((3, 2, 4, 4)).astype(np.float32),
        RNG.standard_normal(2).astype(np.float32),
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )
    p = tmp_path / "model.onnx"
    onnx.save(m, p)
    return p


@pytest.fixture()
def converted_path(invoke, model_path, tmp_path):
    """``model_path`` converted without verification."""
    out = tmp_path / "converted.onnx"
    assert invoke("convert", model_path, "-o", out, "--no-verify").exit_code == 0
    return out


def _args(command, model_path, converted_path, tmp_path):
    if command == "convert":
        return ["convert", model_path, "-o", tmp_path / "out.onnx"]
    return ["validate", model_path, converted_path]


# ---- point 5: tolerances -------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["convert", "validate"])
@pytest.mark.parametrize("option", ["--atol", "--rtol"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-0.5"])
def test_bad_tolerance_is_a_bad_option(
    invoke, command, option, value, model_path, converted_path, tmp_path
):
    """A negative, NaN or infinite tolerance is refused, naming the option."""
    r = invoke(*_args(command, model_path, converted_path, tmp_path), option, value)
    assert_one_line_error(r, option)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("value", ["0", "0.5"])
def test_zero_and_positive_tolerances_still_work(invoke, value, model_path, converted_path):
    """0 and positive tolerances are accepted."""
    r = invoke("validate", model_path, converted_path, "--atol", "1e-3", "--rtol", value)
    assert r.exit_code == 0, r.output


# ---- point 6: zero dims --------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["X:0,3,5,5", "X:1x3x0x5", "X:1,3,5,0"])
def test_parse_refuses_zero_dims(shape):
    """A 0 in --input-shape is refused, in one line naming the shape."""
    with pytest.raises(InputError) as ei:
        parse_input_shapes([shape])
    assert "\n" not in str(ei.value) and shape in str(ei.value)


def test_parse_still_accepts_positive_dims():
    """Positive dims parse, also for input names with a colon."""
    assert parse_input_shapes(["X:2,3,5,5", "input:0:1x1"]) == {
        "X": (2, 3, 5, 5),
        "input:0": (1, 1),
    }


@pytest.mark.parametrize("command", ["convert", "validate", "inspect", "bench"])
def test_zero_dim_refused_by_every_command(invoke, command, model_path, converted_path, tmp_path):
    """Every command refuses a 0 in --input-shape."""
    args = {
        "convert": ["convert", model_path, "-o", tmp_path / "out.onnx"],
        "validate": ["validate", model_path, converted_path],
        "inspect": ["inspect", model_path],
        "bench": ["bench", model_path, "--runs", 1, "--warmup", 0],
    }[command]
    r = invoke(*args, "--input-shape", "X:0,3,5,5")
    assert_one_line_error(r, "X:0,3,5,5")
    assert not (tmp_path / "out.onnx").exists()


# ---- point 7: default output ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "model,expected",
    [
        ("model.onnx", "model_subpixel.onnx"),
        (os.path.join("a", "b", "net.v2.onnx"), os.path.join("a", "b", "net.v2_subpixel.onnx")),
        (os.path.join("a", "model"), os.path.join("a", "model_subpixel.onnx")),
    ],
)
def test_default_output_path(model, expected):
    """The default output: _subpixel before the extension, beside the input."""
    from deconv2sub.pipeline import default_output_path

    assert default_output_path(model) == expected


def test_convert_without_output_saves_beside_the_input(invoke, model_path, tmp_path):
    """No -o: saved beside the input, not overwritten without --force."""
    expected = tmp_path / "model_subpixel.onnx"
    r = invoke("convert", model_path, "--json", "-q")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["saved"] is True and os.path.samefile(data["output"], expected)
    assert "ConvTranspose" not in {n.op_type for n in onnx.load(expected).graph.node}
    r = invoke("convert", model_path)  # text output names the file
    assert r.exit_code == 2 and "--force" in r.output  # never overwritten without --force
    r = invoke("convert", model_path, "--force")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1].startswith(f"saved {expected} ")


# ---- point 8: output is the input ----------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["same", "dot", "absolute", "symlink", "hardlink"])
@pytest.mark.parametrize("force", [False, True])
def test_output_that_is_the_input_is_refused_at_once(
    invoke, spelling, force, model_path, tmp_path, monkeypatch
):
    """The input under any spelling or link is refused as output, with or without --force."""
    monkeypatch.chdir(tmp_path)
    before = model_path.read_bytes()
    target = {
        "same": "model.onnx",
        "dot": os.path.join(".", "model.onnx"),
        "absolute": str(model_path),
        "symlink": "link.onnx",
        "hardlink": "hard.onnx",
    }[spelling]
    if spelling == "symlink":
        os.symlink(model_path, target)
    elif spelling == "hardlink":
        os.link(model_path, target)
    r = invoke("convert", "model.onnx", "-o", target, *(["--force"] if force else []))
    assert_one_line_error(r, "refusing to overwrite the input model")
    assert "--force" not in r.output
    assert model_path.read_bytes() == before


def test_output_that_is_the_inputs_external_data_is_refused(invoke, tmp_path):
    """The input's external data file is refused as output."""
    m = convtranspose_model(
        [1, 3, 5, 5], RNG.standard_normal((3, 2, 4, 4)).astype(np.float32), None, strides=[2, 2]
    )
    src = tmp_path / "big.onnx"
    onnx.save(m, src, save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    data = (tmp_path / "big.onnx.data").read_bytes()
    r = invoke("convert", src, "-o", tmp_path / "big.onnx.data")
    assert_one_line_error(r, "refusing to overwrite the input model")
    assert (tmp_path / "big.onnx.data").read_bytes() == data


# ---- point 11: the criterion in the summary ------------------------------------------------------
def _criterion_block(output):
    """The criterion lines printed just before the final verdict, as {dtype: (atol, rtol)}."""
    lines = output.splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith("criterion (every element):"))
    assert lines[start].endswith("|cand - ref| <= atol + rtol * |ref|")
    values = {}
    for ln in lines[start + 1 : -1]:
        dtype, rest = ln.strip().split(": ")
        fields = dict(kv.split("=") for kv in rest.split())
        values[dtype] = (float(fields["atol"]), float(fields["rtol"]))
    assert lines[-1].startswith(("PASSED", "FAILED")) and values, output
    return values


def test_validate_summary_states_the_criterion_applied(invoke, model_path, converted_path):
    """Validate states the tolerances it applied, in text and JSON."""
    r = invoke("validate", model_path, converted_path, "--atol", "0.002", "--rtol", "0.25")
    assert r.exit_code == 0, r.output
    assert _criterion_block(r.output) == {"float32": (0.002, 0.25)}
    assert all(len(ln) <= 80 for ln in r.output.splitlines() if str(model_path.parent) not in ln)
    r = invoke("validate", model_path, converted_path, "--json", "-q")
    data = json.loads(r.stdout)
    out = data["trials"][0]["outputs"][0]
    assert data["criterion"]["tolerances"] == [
        {"dtype": "float32", "atol": out["atol"], "rtol": out["rtol"]}
    ]
    assert (out["atol"], out["rtol"]) == (1e-5, 1e-4)  # the documented float32 defaults


def test_validate_failure_states_the_criterion(invoke, model_path, tmp_path):
    """A failing validate states the criterion too."""
    other = convtranspose_model(
        ["N", 3, 5, 5],
        RNG.standard_normal((3, 2, 4, 4)).astype(np.float32),
        RNG.standard_normal(2).astype(np.float32),
        strides=[2, 2],
        pads=[1, 1, 1, 1],
    )
    onnx.save(other, tmp_path / "other.onnx")
    r = invoke("validate", model_path, tmp_path / "other.onnx", "--atol", "0.001", "--rtol", "0")
    assert r.exit_code == 1, r.output
    assert _criterion_block(r.output) == {"float32": (0.001, 0.0)}


def test_convert_verification_summary_states_the_criterion(invoke, model_path, tmp_path):
    """Convert's verification states the criterion it applied."""
    r = invoke(
        "convert", model_path, "-o", tmp_path / "o.onnx", "--atol", "3e-05", "--rtol", "0.001"
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    verdict = next(i for i, ln in enumerate(lines) if ln.startswith("PASSED"))
    assert _criterion_block("\n".join(lines[: verdict + 1])) == {"float32": (3e-05, 0.001)}
    r = invoke("convert", model_path, "-o", tmp_path / "o.onnx", "--force", "--json", "-q")
    tolerances = json.loads(r.stdout)["verification"]["criterion"]["tolerances"]
    assert tolerances == [{"dtype": "float32", "atol": 1e-5, "rtol": 1e-4}]


def test_inputs_giving_only_empty_outputs_are_refused(invoke, tmp_path):
    """Zero-size arrays from --inputs make every output empty: no PASSED on comparing nothing."""
    w = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    src = tmp_path / "m.onnx"
    onnx.save(convtranspose_model(["N", 2, 5, 5], w, None, strides=[2, 2], pads=[1, 1, 1, 1]), src)
    npz = tmp_path / "empty.npz"
    np.savez(npz, X=np.zeros((0, 2, 5, 5), np.float32))
    out = tmp_path / "o.onnx"
    r = invoke("convert", src, "-o", out, "--inputs", npz)
    assert r.exit_code == 2 and "proves nothing" in r.output and not out.exists()
    r = invoke("validate", src, src, "--inputs", npz)
    assert r.exit_code == 2 and "proves nothing" in r.output


# ---- option lists come from the registries -------------------------------------------------------
def _choices(command, option):
    import click

    from deconv2sub.cli import main

    param = {p.name: p for p in main.commands[command].params}[option]
    return tuple(param.type.choices) if isinstance(param.type, click.Choice) else None


@pytest.mark.parametrize("command", ["convert", "inspect", "bench"])
def test_strategy_choices_are_the_registrys(command):
    """``--strategy`` offers the chooser's STRATEGIES, in the registry's order."""
    from deconv2sub.rewrite.emissions.registry import NAMES
    from deconv2sub.targets.chooser import STRATEGIES

    assert _choices(command, "strategy") == STRATEGIES == ("default", "auto") + NAMES


@pytest.mark.parametrize("command", ["convert", "validate", "bench"])
def test_runtime_choices_are_the_registrys(command):
    """``--runtime`` offers the runners' RUNTIMES; its help names the TOOLCHAINS."""
    from deconv2sub.cli import main
    from deconv2sub.runtime.runners import RUNTIMES, TOOLCHAINS

    assert _choices(command, "runtime") == RUNTIMES
    help_text = {p.name: p for p in main.commands[command].params}["runtime"].help
    assert f"({', '.join(TOOLCHAINS)};" in help_text


def test_names_module_equals_the_registries():
    """deconv2sub.names (importable without onnx) equals every registry it stands for."""
    from deconv2sub import names
    from deconv2sub.rewrite.emissions.registry import NAMES
    from deconv2sub.runtime.runners import RUNTIMES, TOOLCHAINS
    from deconv2sub.targets.chooser import STRATEGIES

    assert names.EMISSIONS == NAMES and names.STRATEGIES == STRATEGIES
    assert names.RUNTIMES == RUNTIMES and names.TOOLCHAINS == TOOLCHAINS


@pytest.mark.parametrize("command", ["convert", "inspect", "bench"])
def test_target_help_names_every_builtin_target(command):
    """``--target``'s help lists targets.TARGET_NAMES, and each one is accepted."""
    from deconv2sub.cli import main
    from deconv2sub.targets import TARGET_NAMES, resolve

    help_text = {p.name: p for p in main.commands[command].params}["target"].help
    assert "Built in: " + ", ".join(TARGET_NAMES) + ";" in help_text
    assert [resolve(name).name for name in TARGET_NAMES] == list(TARGET_NAMES)


@pytest.mark.parametrize("command", ["convert", "validate", "bench"])
def test_require_cuda_with_cpu_is_refused_by_every_command(invoke, command, model_path, tmp_path):
    """The contradiction is one bad option (exit 2, one line) in every command taking it."""
    args = {
        "convert": ["convert", model_path, "-o", tmp_path / "out.onnx"],
        "validate": ["validate", model_path, model_path],
        "bench": ["bench", model_path, "--runs", 1, "--warmup", 0],
    }[command]
    r = invoke(*args, "--require-cuda", "--provider", "cpu")
    assert_one_line_error(r, "--require-cuda contradicts --provider cpu")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("target", ["missing_folder", "directory"])
def test_bad_output_path_is_refused_before_the_model_is_read(invoke, target, tmp_path):
    """Convert's -o is checked from the path alone, before onnx reads the (here: garbage) model."""
    src = tmp_path / "garbage.onnx"
    src.write_bytes(b"not a model")
    out = tmp_path / "no" / "o.onnx" if target == "missing_folder" else tmp_path
    r = invoke("convert", src, "-o", out)
    assert_one_line_error(r, "does not exist" if target == "missing_folder" else "is a directory")
