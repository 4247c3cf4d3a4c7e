"""Shared sample cases for the ncnn and MNN toolchain tests (tests/test_toolchain_{ncnn,mnn}.py): the samples at
static batch-1 shapes, the rewrite forms, and the comparison with ONNX Runtime on the ORIGINAL.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

import numpy as np
import onnx
import onnxruntime as ort

import deconv2sub
from deconv2sub import ConvertOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES_DIR = os.path.join(ROOT, "samples")
REPROS_DIR = os.path.join(ROOT, "tests", "toolchain_repros")

#: static shapes (batch 1: ncnn has no batch axis) for every bundled sample
SAMPLE_SHAPES: Dict[str, Dict[str, List[int]]] = {
    "seed_example": {"x": [1, 1, 4, 4]},
    "dcgan_generator": {"z": [1, 16, 1, 1]},
    "autoencoder": {"x": [1, 1, 28, 28]},
    "unet_decoder": {"x": [1, 3, 32, 32]},
    "enet_decoder": {"x": [1, 32, 8, 8]},
    "hifigan_upsampler": {"mel": [1, 16, 20]},
    "unet3d_upblock": {"x": [1, 16, 4, 4, 4], "skip": [1, 8, 8, 8, 8]},
    "grouped_upsampler": {"x": [1, 8, 8, 8]},
}

#: the rewrite forms of the toolchain task (None: the original model)
FORMS: Dict[str, Optional[ConvertOptions]] = {
    "original": None,
    "crd": ConvertOptions(strategy="depth_to_space", order="CRD"),
    "dcr": ConvertOptions(strategy="depth_to_space", order="DCR"),
    "reshape": ConvertOptions(strategy="depth_to_space", shuffle="reshape"),
    "default": ConvertOptions(target="onnxruntime"),
    "transpose": ConvertOptions(strategy="transpose"),
}

#: fp32 tolerance against ONNX Runtime
ATOL = RTOL = 1e-3


def sample_path(name: str) -> str:
    return os.path.join(SAMPLES_DIR, f"{name}.onnx")


def form_file(name: str, form: str, folder: str) -> str:
    """The sample ``name`` in ``form``, saved in ``folder`` (the sample itself for the original)."""
    options = FORMS[form]
    if options is None:
        return sample_path(name)
    model, report = deconv2sub.convert_model(sample_path(name), options)
    assert report.nodes and all(n.rewritten for n in report.nodes), report.summary()
    path = os.path.join(folder, f"{name}.{form}.onnx")
    onnx.save(model, path)
    return path


def feeds_for(shapes: Mapping[str, List[int]], seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}


def ort_outputs(path: str, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """ONNX Runtime's outputs for the model at ``path`` (CPU, no graph optimisation)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, dict(feeds))))


def max_errors(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> Dict[str, float]:
    """Max abs error per output; shapes must agree."""
    assert set(got) == set(want), (sorted(got), sorted(want))
    for name in want:
        assert got[name].shape == want[name].shape, (name, got[name].shape, want[name].shape)
    return {n: float(np.abs(got[n] - want[n]).max()) for n in want}


def matches(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> bool:
    """Every output within the fp32 tolerance."""
    max_errors(got, want)
    return all(np.allclose(got[n], want[n], atol=ATOL, rtol=RTOL) for n in want)
