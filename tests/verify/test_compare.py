"""deconv2sub.verify.compare: per-output statistics, tolerances, the PASSED/FAILED table."""

import json

import numpy as np
import pytest

from deconv2sub.verify.compare import (
    ComparisonResult,
    compare_arrays,
    compare_outputs,
    format_comparison_table,
    tolerances_for,
)


def test_default_tolerances_by_dtype_and_overrides():
    """Each dtype has its default (rtol, atol); a given rtol or atol replaces only itself."""
    assert tolerances_for(np.float32) == (1e-4, 1e-5)
    assert tolerances_for(np.float16) == (1e-2, 1e-3)
    assert tolerances_for(np.float64) == (1e-7, 1e-9)
    assert tolerances_for(np.int64) == (0.0, 0.0)
    assert tolerances_for(np.bool_) == (0.0, 0.0)
    assert tolerances_for(np.float32, atol=0.5) == (1e-4, 0.5)
    assert tolerances_for(np.float32, rtol=0.0) == (0.0, 1e-5)


def test_bfloat16_gets_loose_float_tolerance():
    """bfloat16 is held to a loose float tolerance: one ulp at 1.0 passes."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rtol, atol = tolerances_for(ml_dtypes.bfloat16)
    assert rtol == 2e-2 and atol > 0
    ref = np.array([1.0, 2.0], dtype=ml_dtypes.bfloat16)
    cand = np.array([1.0078125, 2.0], dtype=ml_dtypes.bfloat16)  # one bfloat16 ulp at 1.0
    assert compare_arrays("y", ref, cand).passed


def test_statistics_and_worst_element():
    """Max/mean abs error, max rel error and the worst element are reported."""
    ref = np.array([[1.0, -2.0], [4.0, 0.5]], dtype=np.float32)
    cand = ref.copy()
    cand[0, 1] = -2.5  # abs err 0.5, rel 0.25
    cand[1, 1] = 0.75  # abs err 0.25, rel 0.5
    c = compare_arrays("y", ref, cand)
    assert not c.passed
    assert c.max_abs_err == pytest.approx(0.5)
    assert c.mean_abs_err == pytest.approx(0.75 / 4)
    assert c.max_rel_err == pytest.approx(0.5)
    assert c.worst_index == (0, 1)
    assert (c.ref_at_worst, c.cand_at_worst) == (-2.0, -2.5)
    assert c.required_atol == pytest.approx(0.5 - 1e-4 * 2.0)
    assert c.shape_ref == c.shape_cand == (2, 2) and c.dtype == "float32"


def test_relative_error_skips_zero_references():
    """Where the reference is 0 the relative error is undefined: left out, not diff / tiny."""
    ref = np.array([0.0, 0.0, 2.0], dtype=np.float32)
    cand = np.array([1e-7, 0.0, 2.5], dtype=np.float32)
    c = compare_arrays("y", ref, cand)
    assert c.max_rel_err == pytest.approx(0.25)
    assert c.max_abs_err == pytest.approx(0.5)
    c = compare_arrays("y", np.zeros(3, np.float32), np.full(3, 1e-7, np.float32))
    assert c.max_rel_err == 0.0 and c.passed and c.max_abs_err == pytest.approx(1e-7)


def test_required_atol_is_the_passing_threshold():
    """The required atol is the smallest atol with which the comparison passes."""
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 5))
    cand = ref + rng.standard_normal((3, 5)) * 1e-3
    req = compare_arrays("y", ref, cand, rtol=1e-3).required_atol
    assert req > 0
    assert compare_arrays("y", ref, cand, rtol=1e-3, atol=req * 1.001).passed
    assert not compare_arrays("y", ref, cand, rtol=1e-3, atol=req * 0.999).passed


def test_allclose_semantics_at_the_boundary():
    """Pass means numpy's allclose, at its boundary too."""
    ref = np.array([100.0], dtype=np.float64)
    ok = compare_arrays("y", ref, ref + 0.009, rtol=1e-4, atol=0.0)  # 0.009 <= 0.01
    bad = compare_arrays("y", ref, ref + 0.011, rtol=1e-4, atol=0.0)
    assert ok.passed and not bad.passed
    assert np.allclose(ref + 0.009, ref, rtol=1e-4, atol=0)
    assert not np.allclose(ref + 0.011, ref, rtol=1e-4, atol=0)


def test_nan_and_inf_handling():
    """NaN and inf pass only where both sides have them."""
    ref = np.array([np.nan, np.inf, 1.0], dtype=np.float32)
    assert compare_arrays("y", ref, ref.copy()).passed
    cand = np.array([np.nan, np.inf, np.nan], dtype=np.float32)
    c = compare_arrays("y", ref, cand)
    assert not c.passed and "NaN in candidate only" in c.note
    assert c.required_atol == float("inf") and c.worst_index == (2,)
    r = compare_arrays("y", cand, ref)
    assert not r.passed and "NaN in reference only" in r.note
    assert not compare_arrays("y", np.array([np.inf]), np.array([-np.inf])).passed


def test_shape_and_dtype_kind_mismatch_fail_with_note():
    """A shape or dtype-kind mismatch fails, with a note saying which."""
    c = compare_arrays("y", np.zeros((1, 8, 8), np.float32), np.zeros((1, 8, 9), np.float32))
    assert not c.passed and c.note == "shape mismatch (1,8,8) vs (1,8,9)" and c.max_abs_err is None
    d = compare_arrays("y", np.zeros(3, np.float32), np.zeros(3, np.int64))
    assert not d.passed and "dtype mismatch float32 vs int64" in d.note
    e = compare_arrays("y", np.zeros(3, np.float32), np.zeros(3, np.float64))
    assert e.passed and "dtype differs" in e.note


def test_integers_and_bools_compare_exactly():
    """Integers and bools are compared exactly."""
    a = np.array([1, 2, 2**62 + 1], dtype=np.int64)
    assert compare_arrays("i", a, a.copy()).passed
    assert not compare_arrays("i", a, a + np.array([0, 0, 1])).passed  # invisible in float64
    assert not compare_arrays("b", np.array([True, False]), np.array([True, True])).passed


def test_empty_and_scalar_arrays():
    """Empty and 0-d arrays compare."""
    assert compare_arrays("e", np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)).passed
    s = compare_arrays("s", np.float32(2.0), np.float32(3.0))
    assert not s.passed and s.worst_index == ()


def test_outputs_paired_by_name_not_position():
    """Outputs are paired by name, whatever their order."""
    x, y = np.arange(4.0), np.arange(4.0) * 10
    res = compare_outputs({"a": x, "b": y}, {"b": y, "a": x})
    assert res.passed and [o.name for o in res.outputs] == ["a", "b"]
    swapped = compare_outputs({"a": x, "b": y}, {"a": y, "b": x})
    assert not swapped.passed


def test_unpaired_outputs_fail():
    """An output only one side has makes the result fail."""
    x = np.ones(2)
    res = compare_outputs({"a": x, "gone": x}, {"a": x, "new": x})
    assert [o.name for o in res.outputs] == ["a"] and res.outputs[0].passed
    assert res.unpaired_ref == ["gone"] and res.unpaired_cand == ["new"]
    assert not res.passed


def test_to_dict_is_strict_json():
    """The JSON spells inf and NaN as strings (strict JSON)."""
    ref = np.array([1.0, np.nan], np.float32)
    res = compare_outputs({"y": ref}, {"y": np.array([1.0, 2.0], np.float32)})
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["passed"] is False
    out = d["outputs"][0]
    assert out["required_atol"] == "inf" and out["ref_at_worst"] == "nan"
    assert out["worst_index"] == [1]


def test_table_fits_width_and_marks_failures():
    """The table fits the width and marks failing outputs."""
    long_name = "/decoder/upsample_block_3/ConvTranspose_output_0_with_a_very_long_suffix"
    ref = {"y": np.ones(3, np.float32), long_name: np.ones(3, np.float32), "lost": np.ones(1)}
    cand = {"y": np.ones(3, np.float32) + 1e-2, long_name: np.ones(3, np.float32)}
    text = format_comparison_table(compare_outputs(ref, cand), width=80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    row = next(line for line in lines if line.startswith("/decoder"))
    assert "…" in row and "suffix" in row and row.endswith("PASS")
    y_row = next(line for line in lines if line.startswith("y "))
    assert y_row.endswith("FAIL") and "1.00e-02" in y_row
    assert any("lost" in line and "missing" in line for line in lines)
    assert lines[-1].startswith("FAIL: 2 of 3")


def test_table_for_passing_result():
    """A passing table ends with the PASS line."""
    text = format_comparison_table(compare_outputs({"y": np.ones(2)}, {"y": np.ones(2)}))
    assert text.splitlines()[-1] == "PASS: all 1 outputs match"
    assert format_comparison_table(ComparisonResult()).splitlines()[-1].startswith("PASS")
