"""Shared steps of ``tests/test_toolchain_*.py``: convert a sample, run it on a toolchain, compare.

The oracle is always ONNX Runtime running the ORIGINAL sample; the toolchain runs the converted
model through its own converter and runtime (``deconv2sub.toolchains.<name>.compile``).
"""

from __future__ import annotations

import os

import onnx
from toolchain_cases import FORMS, SAMPLE_SHAPES, close, ort_outputs, random_feeds

import deconv2sub
from deconv2sub import ConvertOptions

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples")


def sample_path(sample: str) -> str:
    return os.path.join(SAMPLES, sample + ".onnx")


def convert_sample(sample: str, form: str, out_dir: str) -> str:
    """Convert a sample in one form (every ConvTranspose must go); the converted file's path."""
    model, report = deconv2sub.convert_model(sample_path(sample), ConvertOptions(**FORMS[form]))
    assert not any(n.op_type == "ConvTranspose" for n in model.graph.node), report.summary()
    path = os.path.join(out_dir, f"{sample}__{form}.onnx")
    onnx.save(model, path)
    return path


def toolchain_error(toolchain, model_path: str, sample: str, workdir: str, **tolerances):
    """(max abs error, within 1e-3 + 1e-3 rel, or ``rtol``/``atol`` given) of the toolchain on
    ``model_path`` vs ORT.
    """
    shapes = SAMPLE_SHAPES[sample]
    feeds = random_feeds(shapes)
    ref = ort_outputs(onnx.load(sample_path(sample)), feeds)
    compiled = toolchain.compile(model_path, shapes, workdir)
    return close(compiled.run(feeds), ref, **tolerances)
