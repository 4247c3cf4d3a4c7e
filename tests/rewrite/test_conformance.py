"""The ONNX conformance (backend node test) cases for ConvTranspose, run through the converter.

Source: ``onnx/backend/test/data/node/test_convtranspose*/`` (``model.onnx`` +
``test_data_set_0/*.pb``) when the installed onnx ships that folder; wheels that leave it out still
ship the generator that writes it (``onnx.backend.test.case.node``), so the same models, inputs and
expected outputs come from there.

In these models the weight ``W`` is a graph *input*. Each case is checked twice:

* as shipped: the converter leaves the node alone with a reason (weight known only at run time),
  exit 0;
* with ``W`` baked in as an initializer (the shipped value): the node is rewritten and the result is
  compared with ORT running the original AND with the shipped expected output (where ORT agrees with
  it).

Results with onnx 1.23.2 / onnxruntime 1.31.1: ORT and the shipped outputs agree on all 11 cases
(the ONNX reference evaluator too). All 11 are rewritten, ``test_convtranspose_output_shape``
included (strides 3x2, output_shape 10x8 on a 3x3 input with a 3x3 kernel: the full transposed
output is only 9x7, so the total padding is negative; the extra last row and column are the bias
only). The models have ir_version 10 and opset 22: ORT runs them as they are; if a future onnx
raises the IR version beyond ORT's, only the copy given to ORT is lowered, never the converted
model.
"""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import deconv2sub

ort.set_default_logger_severity(3)

#: Cases the converter declines, with the reason it gives (see the module docstring).
DECLINED: dict = {}
#: Cases where ORT's result differs from the shipped expected output (none with the versions above).
ORT_DIFFERS: dict = {}


def _load_cases():
    data_dir = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    cases = {}
    for folder in sorted(glob.glob(os.path.join(data_dir, "test_convtranspose*"))):
        model = onnx.load(os.path.join(folder, "model.onnx"))
        ds = os.path.join(folder, "test_data_set_0")
        read = lambda f: numpy_helper.to_array(onnx.load_tensor(f))  # noqa: E731
        inputs = [read(f) for f in sorted(glob.glob(os.path.join(ds, "input_*.pb")))]
        outputs = [read(f) for f in sorted(glob.glob(os.path.join(ds, "output_*.pb")))]
        cases[os.path.basename(folder)] = (model, inputs, outputs)
    if cases:
        return cases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for case in _generated_cases():
            inputs, outputs = case.data_sets[0]
            cases[case.name] = (case.model, list(inputs), list(outputs))
    return cases


def _generated_cases():
    """The ConvTranspose node cases from onnx's generator.

    ``collect_testcases`` imports every op's module (seconds); importing only ``convtranspose`` with
    the op filter set is enough and fast.
    """
    import importlib

    import onnx.backend.test.case.node as node_cases

    try:
        node_cases._TargetOpType = "ConvTranspose"
        importlib.import_module("onnx.backend.test.case.node.convtranspose")
        found = [c for c in node_cases._NodeTestCases if c.name.startswith("test_convtranspose")]
    except Exception:  # noqa: BLE001 - private API changed: take the slow public way
        found = []
    if found:
        return found
    return node_cases.collect_testcases("ConvTranspose")


CASES = _load_cases()


def _ort_copy(model: onnx.ModelProto) -> bytes:
    """The model for ORT; its IR version is lowered (on a copy) only if ORT refuses it."""
    data = model.SerializeToString()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        return data
    except Exception as exc:  # noqa: BLE001
        if "IR version" not in str(exc):
            raise
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.ir_version = min(copy.ir_version, 10)
    return copy.SerializeToString()


def _run(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(_ort_copy(model), so, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )


def _feeds(model, inputs):
    return {i.name: v for i, v in zip(model.graph.input, inputs)}


def _bake_weight(model, feeds):
    """A copy with the weight input turned into an initializer holding the shipped value."""
    baked = onnx.ModelProto()
    baked.CopyFrom(model)
    w_name = baked.graph.node[0].input[1]
    kept = [i for i in baked.graph.input if i.name != w_name]
    del baked.graph.input[:]
    baked.graph.input.extend(kept)
    baked.graph.initializer.append(numpy_helper.from_array(feeds[w_name], w_name))
    return baked, {k: v for k, v in feeds.items() if k != w_name}


def _close(a, b, rtol, atol):
    return a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol)


def test_cases_found():
    """ONNX's ConvTranspose node test cases are found."""
    assert len(CASES) >= 11
    assert {
        "test_convtranspose",
        "test_convtranspose_1d",
        "test_convtranspose_3d",
        "test_convtranspose_pads",
        "test_convtranspose_autopad_same",
        "test_convtranspose_group_2",
    } <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_as_shipped_weight_is_a_graph_input(name):
    """As shipped (weight a graph input) the node is kept; outputs equal ORT's on the original."""
    model, inputs, _ = CASES[name]
    converted, report = deconv2sub.convert_model(model)
    assert not report.rewritten and report.skipped[0].code == "weight_not_constant"
    assert converted.ir_version == model.ir_version
    feeds = _feeds(model, inputs)
    for r, g in zip(_run(model, feeds), _run(converted, feeds)):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("name", sorted(CASES))
def test_baked_weight_rewritten_matches_ort_and_expected(name):
    """With the weight baked in, the rewrite matches ORT and ONNX's expected output."""
    model, inputs, expected = CASES[name]
    baked, feeds = _bake_weight(model, _feeds(model, inputs))
    onnx.checker.check_model(baked, full_check=True)
    converted, report = deconv2sub.convert_model(baked)
    assert converted.ir_version == model.ir_version  # never raised (nor lowered) in the output
    if name in DECLINED:
        assert not report.rewritten, report.nodes[0].summary()
        assert report.skipped[0].code == DECLINED[name], report.nodes[0].summary()
    else:
        assert report.rewritten and not report.skipped, [n.reason for n in report.skipped]
        assert "ConvTranspose" not in [n.op_type for n in converted.graph.node]
        onnx.checker.check_model(converted, full_check=True)
    ref = _run(baked, feeds)
    got = _run(converted, feeds)
    for r, g, e in zip(ref, got, expected):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)  # against ORT running the original
        ort_agrees = _close(r, e, rtol=1e-3, atol=1e-6)
        assert ort_agrees == (name not in ORT_DIFFERS), f"{name}: ORT vs shipped output changed"
        if ort_agrees:
            # against the shipped expected output
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-5)
