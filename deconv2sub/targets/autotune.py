"""``strategy="auto"``: choose each node's emission by measured latency on a runtime.

For a node whose input size is known (from the model, or else from ``ConvertOptions.input_shapes``:
the CLI's ``--input-shape``), every applicable fixed strategy is emitted for a one-node model of the
same shape (weight shape, attributes, input size, dtype, opset; a size the model leaves symbolic
stays symbolic there, so each candidate is emitted as in the model, and is fed at the given size),
the candidates are timed together on the chosen runtime and provider (loaded by
:func:`deconv2sub.runtime.runners.create_runner` with graph optimisations on, timed by
:func:`deconv2sub.runtime.timing.time_runners`, the loop ``bench`` uses: interleaved, medians) and
the fastest wins. Results are cached per (runtime and version, provider, shape, attributes, dtype,
opset): in memory for the process, and in a JSON file (``$DECONV2SUB_CACHE_DIR/strategy.json``,
default ``~/.cache/deconv2sub``) unless ``DECONV2SUB_CACHE_DIR`` is empty. Nothing about the node's
weight values is used: timing does not depend on them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import threading
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..plan.phases import macs_ratio, phase_split
from ..plan.subpixel import PlanError
from ..rewrite.emissions.base import Choice
from ..rewrite.emissions.pointwise_gemm import gemm_applies
from ..rewrite.options import ConvertOptions
from ..rewrite.refusal import Refusal
from ..runtime.base import Runner
from ..runtime.runners import create_runner
from ..runtime.timing import time_runners
from . import resolve as resolve_target
from .chooser import choose_profile_default, fixed
from .conformance import violations

__all__ = ["Converter", "candidates", "clear_cache", "measurer", "tune"]

# (model, options) -> (converted model, report): deconv2sub.api.convert_model
Converter = Callable[[onnx.ModelProto, ConvertOptions], tuple]

_LOCK = threading.Lock()
_MEMORY: Dict[str, dict] = {}
RUNS, WARMUP = 15, 3


def _cache_file() -> Optional[str]:
    base = os.environ.get("DECONV2SUB_CACHE_DIR")
    if base is None:
        base = os.path.join(os.path.expanduser("~"), ".cache", "deconv2sub")
    if not base:
        return None
    return os.path.join(base, "strategy.json")


def _load_disk() -> Dict[str, dict]:
    path = _cache_file()
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_disk(key: str, entry: dict) -> None:
    path = _cache_file()
    if not path:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = _load_disk()
        data[key] = entry
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:  # a read-only home is not an error: the in-memory cache still works
        pass


def clear_cache(disk: bool = False) -> None:
    """Forget the measurements of this process; with ``disk``, delete the cache file too."""
    with _LOCK:
        _MEMORY.clear()
    path = _cache_file()
    if disk and path and os.path.exists(path):
        os.remove(path)


def _runtime_version(runtime: str) -> str:
    try:
        if runtime == "openvino":
            import openvino

            return openvino.__version__.split("-")[0]
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return "?"


def candidates(material, opset: int) -> list:
    """The fixed strategies worth measuring for this node."""
    names = ["two_stage", "transpose_gather", "transpose", "depth_to_space", "channels_last",
             "low_rank_transpose"]
    if material.rank == 3:
        names.append("depth_to_space_3d")  # declines unless H and W share a stride
    if material.emit_inputs is None:  # per-phase convs and Gemm take float weights only
        plan = material.planner
        try:
            single = plan(material.weight, None, material.attrs, material.in_spatial, "CRD", True)
            if gemm_applies(material, opset):
                names.append("pointwise_gemm")
            split = phase_split(plan(material.weight, None, material.attrs, material.in_spatial,
                                     "CRD", "always"))
            if (split is not None and 1 < len(split.convs) <= 16
                    and (macs_ratio(single) < 1.0 or single.needs_crop)):
                # fewer taps, or a crop folded away
                names += ["per_phase", "per_phase_channels_last"]
        except (PlanError, ValueError):
            pass
    return names


def _one_node_model(material, opset: int) -> Tuple[onnx.ModelProto, np.ndarray]:
    """ConvTranspose of the node's shape with random weights; returns (model, input).

    The input declares what the node's model declares (a symbolic size stays symbolic, so every
    candidate is emitted as it would be there: no Gather baked for a size the model leaves open)
    and the data has the sizes to measure at
    (:meth:`deconv2sub.rewrite.material.NodeMaterial.sizes`).
    """
    attrs = material.attrs
    dtype = np.dtype(material.dtype or material.weight.dtype)
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        dtype = np.dtype(np.float32)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(material.weight.shape).astype(dtype)
    inits = [numpy_helper.from_array(w, "W")]
    inputs = ["X", "W"]
    if material.bias is not None:
        b = rng.standard_normal(material.bias.shape).astype(dtype)
        inits.append(numpy_helper.from_array(b, "B"))
        inputs.append("B")
    given = dict(strides=attrs.strides, dilations=attrs.dilations, pads=attrs.pads,
                 output_padding=attrs.output_padding, output_shape=attrs.output_shape,
                 kernel_shape=attrs.kernel_shape)
    kw = {k: v for k, v in given.items() if v}
    if attrs.auto_pad and attrs.auto_pad != "NOTSET":
        kw["auto_pad"] = attrs.auto_pad
    node = helper.make_node("ConvTranspose", inputs, ["Y"], name="node", group=attrs.group, **kw)
    batch, spatial = material.sizes()
    shape = [batch or 1, material.weight.shape[0], *spatial]
    declared = [material.batch or "N", shape[1],
                *[f"S{i}" if v is None else v
                  for i, v in enumerate(material.in_spatial or spatial)]]
    graph = helper.make_graph([node], "tune", [helper.make_tensor_value_info("X", elem, declared)],
                              [helper.make_tensor_value_info("Y", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 7))],
                              ir_version=7)
    return model, rng.standard_normal(shape).astype(dtype)


# Bump when the candidates change (2: the channels-last emissions; 3: symbolic sizes stay symbolic).
CACHE_VERSION = 3


def _key(material, opset: int, options) -> str:
    a = material.attrs
    parts = [f"v{CACHE_VERSION}", options.tune_runtime, _runtime_version(options.tune_runtime),
             options.tune_provider, str(np.dtype(material.dtype or material.weight.dtype)),
             str(list(material.weight.shape)), str(material.bias is not None),
             _sizes_key(material),
             str([a.strides, a.dilations, a.pads, a.output_padding, a.output_shape, a.auto_pad,
                  a.group]),
             f"opset{opset}", "q" if material.emit_inputs is not None else "f"]
    return "|".join(parts)


def _sizes_key(material) -> str:
    """The measured sizes, ``?`` marking those the model leaves symbolic (emitted differently)."""
    batch, spatial = material.sizes()
    declared = [material.batch] + list(material.in_spatial or [None] * len(spatial))
    measured = [batch or 1, *spatial]
    return str([f"{v}" if d is not None else f"{v}?" for v, d in zip(measured, declared)])


def measurer(convert: Converter) -> Callable[..., Choice]:
    """The measuring chooser for ``strategy="auto"``, converting the candidates with ``convert``.

    See :func:`deconv2sub.targets.chooser.choose`.
    """

    def measure(material, opset: int, options) -> Choice:
        return tune(material, opset, options, convert)

    return measure


def _profile_default(material, opset: int, profile, why: str):
    """The target's own default choice for the node, with ``why`` auto did not measure it."""
    picked = choose_profile_default(material, opset, profile)
    if isinstance(picked, Refusal):
        return picked
    return Choice(picked.strategy, picked.order, picked.fold_crop, f"auto: {why}; {picked.reason}")


def _allowed(names, material, opset: int, options, profile, convert: Converter) -> Dict[str, list]:
    """Measured candidate name -> what of its emitted graph the target profile forbids."""
    model, _ = _one_node_model(material, opset)
    out = {}
    for name in names:
        try:
            converted, _ = convert(model, ConvertOptions(strategy=name, sink=False,
                                                         target=options.target))
        except Exception as e:  # noqa: BLE001 - a candidate that no longer emits: not allowed
            out[name] = [f"not emitted ({e})"]
            continue
        out[name] = violations(profile, converted)
    return out


def tune(material, opset: int, options, convert: Converter) -> Union[Choice, Refusal]:
    """The measured-best Choice for the node among what the target runs (see the module docstring).

    Candidates are converted with ``convert`` (:func:`deconv2sub.api.convert_model`); the fastest
    whose emitted graph stays within ``options.target``'s profile wins
    (:func:`deconv2sub.targets.conformance.violations`); where nothing can be measured, or nothing
    measured fits, the profile's own default rule chooses.
    """
    profile = resolve_target(options.target)
    _, spatial = material.sizes()
    if spatial is None or any(v is None for v in spatial):
        why = "input size unknown, nothing to measure (give it with --input-shape)"
        return _profile_default(material, opset, profile, why)
    key = _key(material, opset, options)
    with _LOCK:
        entry = _MEMORY.get(key)
    if entry is None:
        entry = _load_disk().get(key)
        cached = entry is not None
        if entry is None:
            entry = _measure(material, opset, options, convert)
            if entry is None:
                return _profile_default(material, opset, profile, f"could not measure on "
                                        f"{options.tune_runtime} ({options.tune_provider})")
            _save_disk(key, entry)
        with _LOCK:
            _MEMORY[key] = entry
    else:
        cached = True
    by_speed = sorted(entry["median_s"].items(), key=lambda kv: kv[1])
    refused = _allowed([k for k, _ in by_speed], material, opset, options, profile, convert)
    fits = [k for k, _ in by_speed if not refused[k]]
    timings = ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in by_speed)
    reason = f"auto: fastest measured on {entry['runtime']}: {timings}"
    reason += " (cached)" if cached else ""
    outside = [f"{k} ({refused[k][0]})" for k, _ in by_speed if refused[k]]
    if outside:
        reason += f"; outside target {profile.name}: {', '.join(outside)}"
    declined = tuple((k, "outside_target") for k, _ in by_speed if refused[k])
    if fits:
        picked = fixed(fits[0], group=material.attrs.group, opset=opset, reason=reason)
    else:
        picked = _profile_default(material, opset, profile, reason)
    if isinstance(picked, Refusal):
        return picked
    return dataclasses.replace(picked, declined=declined)


def _measure(material, opset: int, options, convert: Converter) -> Optional[dict]:
    """Median seconds of every candidate that emits a distinct graph and runs, and the fastest.

    The candidates are loaded as deployed (:func:`deconv2sub.runtime.runners.create_runner`: graph
    optimisations on, default threads; ONNX Runtime's idle workers do not spin, since a spinning
    pool would steal the cores of the next candidate and bias the timings) and timed together by
    :func:`deconv2sub.runtime.timing.time_runners` (interleaved). None when nothing could run.
    """
    try:
        model, x = _one_node_model(material, opset)
    except Exception:  # noqa: BLE001 - an unusual dtype/attribute: no measurement, default emission
        return None
    feeds = {"X": x}
    runners: Dict[str, Runner] = {}
    try:
        _load_candidates(runners, model, feeds, material, opset, options, convert)
        if not runners:
            return None
        times = time_runners(runners, {name: feeds for name in runners}, WARMUP, RUNS)
        info = next(iter(runners.values())).info
    finally:
        runners.clear()
    medians = {name: statistics.median(v) for name, v in times.items()}
    choice = min(medians, key=medians.get)
    where = f"{info.runtime} {info.version} on {info.device}"
    return {"choice": choice, "median_s": medians, "runtime": where}


def _load_candidates(runners: Dict[str, Runner], model: onnx.ModelProto, feeds, material,
                     opset: int, options, convert: Converter) -> None:
    """Fill ``runners`` with every candidate that emits a graph not seen yet and runs once.

    OpenVINO runs on its CPU whatever the provider; ``tune_provider`` "cuda" measures on CUDA or
    not at all; another runtime name (a toolchain) measures on ONNX Runtime.
    """
    runtime = "openvino" if options.tune_runtime == "openvino" else "onnxruntime"
    provider = "cpu" if runtime == "openvino" else options.tune_provider
    emitted = set()  # graphs already measured: at symbolic sizes transpose_gather is two_stage's
    for name in candidates(material, opset):
        try:
            converted, report = convert(model, ConvertOptions(strategy=name, sink=False))
            if not report.rewritten or report.rewritten[0].strategy != name:
                continue
            graph = converted.graph.SerializeToString()
            if graph in emitted:
                continue
            emitted.add(graph)
            runner = create_runner(converted, runtime=runtime, provider=provider,
                                   require_cuda=provider == "cuda", optimize=True, spin=False,
                                   what=f"the {name} candidate")
            runner.run_for_timing(feeds)
        except Exception:  # noqa: BLE001 - runtime missing, or a candidate this runtime cannot run
            continue
        runners[name] = runner
