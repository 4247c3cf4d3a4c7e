"""Shared steps of the toolchain tests: convert a sample, run it on a toolchain, compare with ORT.

The oracle is always ONNX Runtime running the ORIGINAL sample; the toolchain runs the converted
model through its own converter and runtime (``deconv2sub.toolchains.<name>.compile``). Every
toolchain test file parametrises its sample test with :func:`sample_params` (samples x forms of
``toolchain_cases``, with the file's quick pairs and measured failures) and checks each pair with
:func:`check_sample`. The repro models of ``tests/toolchain_repros/<toolchain>/`` (each exact on
ONNX Runtime, wrong or rejected on its toolchain) are found with :func:`repro_paths` and checked
with :func:`repro_error`, as ``xfail(strict=True)`` so that an upstream fix shows up as an XPASS.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Collection, Dict, List, Mapping, Optional, Tuple, Union

import onnx
import pytest
from toolchain_cases import (
    ALL_FORMS,
    FORMS,
    SAMPLE_SHAPES,
    TARGET_FORMS,
    close,
    ort_outputs,
    random_feeds,
)

import deconv2sub
from deconv2sub import ConvertOptions

TESTS = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(TESTS, "..", "samples")
REPROS_DIR = os.path.join(TESTS, "toolchain_repros")

Pair = Tuple[str, str]
Shapes = Mapping[str, List[int]]


def sample_path(sample: str) -> str:
    """The bundled sample's ONNX file."""
    return os.path.join(SAMPLES, sample + ".onnx")


def convert_sample(sample: str, form: str, out_dir) -> str:
    """Converts a sample in one form (FORMS or TARGET_FORMS); every ConvTranspose must go.

    Returns:
        The converted file's path, ``<out_dir>/<sample>__<form>.onnx``.
    """
    options = ConvertOptions(**{**FORMS, **TARGET_FORMS}[form])
    model, report = deconv2sub.convert_model(sample_path(sample), options)
    assert report.nodes, f"{sample}: no ConvTranspose found"
    assert not any(n.op_type == "ConvTranspose" for n in model.graph.node), report.summary()
    path = os.path.join(str(out_dir), f"{sample}__{form}.onnx")
    onnx.save(model, path)
    return path


def form_path(sample: str, form: str, out_dir) -> str:
    """The sample itself for ``"original"``, else :func:`convert_sample`'s file."""
    return sample_path(sample) if form == "original" else convert_sample(sample, form, out_dir)


def toolchain_error(toolchain, model_path: str, sample: str, workdir: str,
                    shapes: Optional[Shapes] = None, **tolerances) -> Tuple[float, bool]:
    """Runs ``model_path`` on the toolchain and compares it with ORT on the original sample.

    Args:
        toolchain: a ``deconv2sub.toolchains`` module (``compile(path, shapes, workdir)``).
        model_path: the model the toolchain converts (the sample or a form of it).
        sample: the sample's name; ORT runs its original file.
        workdir: the toolchain's work directory.
        shapes: static input shapes (default ``SAMPLE_SHAPES[sample]``).
        **tolerances: ``rtol``/``atol`` for :func:`toolchain_cases.close` (1e-3 each unless given).

    Returns:
        (max abs error, within tolerance) of the toolchain's outputs.
    """
    shapes = SAMPLE_SHAPES[sample] if shapes is None else shapes
    feeds = random_feeds(shapes)
    ref = ort_outputs(onnx.load(sample_path(sample)), feeds)
    compiled = toolchain.compile(model_path, shapes, workdir)
    return close(compiled.run(feeds), ref, **tolerances)


def check_sample(toolchain, sample: str, form: str, tmp_path, shapes: Optional[Shapes] = None,
                 **tolerances) -> None:
    """Asserts that ``sample`` in ``form`` on the toolchain matches ORT on the original."""
    path = form_path(sample, form, tmp_path)
    err, ok = toolchain_error(toolchain, path, sample, os.path.join(str(tmp_path), "w"),
                              shapes, **tolerances)
    assert ok, f"{sample} {form}: max abs error {err} against ORT on the original"


def sample_params(quick: Collection[Pair] = (),
                  xfails: Optional[Mapping[Pair, Union[str, pytest.MarkDecorator]]] = None,
                  forms=ALL_FORMS, samples=SAMPLE_SHAPES, slow: bool = True) -> list:
    """The ``(sample, form)`` parameters of a toolchain's sample test, every sample x form.

    Args:
        quick: pairs run in the default run; the others are marked slow (when ``slow``).
        xfails: pair -> the measured failure: a reason (a strict xfail) or an xfail mark.
        forms: the forms (default: the original and every FORMS entry).
        samples: the samples (default: every bundled sample).
        slow: mark the pairs not in ``quick`` slow.

    Returns:
        ``pytest.param(sample, form)`` with id ``sample-form``, samples outer, forms inner.
    """
    xfails = xfails or {}
    params = []
    for sample in samples:
        for form in forms:
            marks = [pytest.mark.slow] if slow and (sample, form) not in quick else []
            why = xfails.get((sample, form))
            if isinstance(why, str):
                marks.append(pytest.mark.xfail(strict=True, reason=why))
            elif why is not None:
                marks.append(why)
            params.append(pytest.param(sample, form, marks=marks, id=f"{sample}-{form}"))
    return params


def check_converted(toolchain, original: onnx.ModelProto, feeds, options: ConvertOptions,
                    tmp_path, **tolerances) -> list:
    """Asserts that ``original`` converted with ``options`` matches ORT on the original there.

    Every ConvTranspose must go; the converted model runs through the toolchain's converter and
    runtime at the shapes of ``feeds``. Returns the toolchain model's ops (empty for a toolchain
    that runs in its own venv and does not report them).
    """
    model, report = deconv2sub.convert_model(original, options)
    assert not any(n.op_type == "ConvTranspose" for n in model.graph.node), report.summary()
    path = os.path.join(str(tmp_path), "converted.onnx")
    onnx.save(model, path)
    compiled = toolchain.compile(path, {k: list(v.shape) for k, v in feeds.items()},
                                 os.path.join(str(tmp_path), "w"))
    err, ok = close(compiled.run(feeds), ort_outputs(original, feeds), **tolerances)
    assert ok, f"max abs error {err} against ORT on the original"
    return list(getattr(compiled, "ops", None) or [])


def repro_paths(toolchain: str) -> List[str]:
    """The repro models of ``toolchain``, sorted by name."""
    folder = os.path.join(REPROS_DIR, toolchain)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".onnx"))


def static_input_shapes(path: str) -> Dict[str, List[int]]:
    """The static input shapes written in a model (its initializers left out)."""
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    return {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
            for vi in model.graph.input if vi.name not in inits}


def repro_error(toolchain, path: str, workdir: str, **tolerances) -> Tuple[float, bool]:
    """(max abs error, within tolerance) of a repro on the toolchain vs ORT on the same file."""
    shapes = static_input_shapes(path)
    feeds = random_feeds(shapes)
    compiled = toolchain.compile(path, shapes, workdir)
    return close(compiled.run(feeds), ort_outputs(path, feeds), **tolerances)


def assert_timed_in_worker(compiled, feeds, calls: int = 5) -> None:
    """Asserts that ``compiled.timed_run`` times the run in the worker, not the trip to it.

    Interleaved with ``calls`` round trips of ``compiled.run`` (feeds file, pipe, outputs file),
    its median must be positive and below theirs; the work folder gains no file.
    """
    before = sorted(os.listdir(compiled.workdir))
    inside, trips = [], []
    for _ in range(calls):
        inside.append(compiled.timed_run(feeds))
        t = time.perf_counter()
        compiled.run(feeds)
        trips.append(time.perf_counter() - t)
    assert all(isinstance(t, float) and t > 0 for t in inside), inside
    assert statistics.median(inside) < statistics.median(trips), (inside, trips)
    assert sorted(os.listdir(compiled.workdir)) == before
