"""Numerical comparison of a reference model's outputs with a candidate's.

Outputs are paired by *name*, never by position: a rewrite may legitimately reorder graph
outputs, and pairing by position would then compare unrelated tensors. Per element, the test is
numpy.allclose's ``|cand - ref| <= atol + rtol * |ref|``, with NaN equal to NaN. Beyond
pass/fail we report the numbers a user needs to judge a failure: the worst element and the
smallest ``atol`` that would have passed.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

# (rtol, atol) per dtype. float32 leaves room for a different accumulation order (Conv vs
# ConvTranspose sum the same products in another order); the others scale with precision.
DEFAULT_TOLERANCES: Dict[np.dtype, Tuple[float, float]] = {
    np.dtype(np.float16): (1e-2, 1e-3),
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-7, 1e-9),
}
# Float types numpy only knows through ml_dtypes (kind 'V'), keyed by name.
_EXTENDED_FLOAT_TOLERANCES: Dict[str, Tuple[float, float]] = {
    "bfloat16": (2e-2, 1e-2),
}
_FALLBACK_FLOAT_TOLERANCE = (1e-1, 1e-1)  # float8 and friends: only gross errors are meaningful


def _is_floatlike(dtype: np.dtype) -> bool:
    return dtype.kind in "fc" or (dtype.kind == "V" and "float" in dtype.name)


def tolerances_for(dtype, rtol: Optional[float] = None,
                   atol: Optional[float] = None) -> Tuple[float, float]:
    """``(rtol, atol)`` for ``dtype``; an explicit ``rtol``/``atol`` replaces its default.

    Integers and bools compare exactly by default.
    """
    dtype = np.dtype(dtype)
    if dtype in DEFAULT_TOLERANCES:
        default = DEFAULT_TOLERANCES[dtype]
    elif dtype.kind == "c":
        default = DEFAULT_TOLERANCES.get(np.dtype(dtype.char.lower()),
                                         DEFAULT_TOLERANCES[np.dtype(np.float64)])
    elif _is_floatlike(dtype):
        default = _EXTENDED_FLOAT_TOLERANCES.get(dtype.name, _FALLBACK_FLOAT_TOLERANCE)
    else:
        default = (0.0, 0.0)
    return (default[0] if rtol is None else float(rtol),
            default[1] if atol is None else float(atol))


def _json_float(x: Optional[float]) -> Any:
    """JSON has no inf/NaN; spell them as strings so ``json.dumps(..., allow_nan=False)`` works."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


@dataclass
class OutputComparison:
    """How one output of the candidate compares with the reference.

    Error fields are ``None`` when the arrays could not be compared (shape or dtype mismatch).
    ``worst_index`` is the element that comes closest to failing (or fails by the most), i.e.
    the one that sets ``required_atol``.
    """

    name: str
    dtype: str
    shape_ref: Tuple[int, ...]
    shape_cand: Tuple[int, ...]
    max_abs_err: Optional[float]
    mean_abs_err: Optional[float]
    max_rel_err: Optional[float]
    worst_index: Optional[Tuple[int, ...]]
    ref_at_worst: Any
    cand_at_worst: Any
    required_atol: Optional[float]
    rtol: float
    atol: float
    passed: bool
    note: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready (strict: non-finite numbers as strings)."""
        d = asdict(self)
        d["shape_ref"], d["shape_cand"] = list(self.shape_ref), list(self.shape_cand)
        d["worst_index"] = None if self.worst_index is None else list(self.worst_index)
        for key in ("max_abs_err", "mean_abs_err", "max_rel_err", "required_atol", "ref_at_worst",
                    "cand_at_worst"):
            if isinstance(d[key], float):
                d[key] = _json_float(d[key])
        return d


@dataclass
class ComparisonResult:
    """Every output compared, and the names only one side produced (which fail)."""

    outputs: List[OutputComparison] = field(default_factory=list)
    unpaired_ref: List[str] = field(default_factory=list)  # only the reference produced these
    unpaired_cand: List[str] = field(default_factory=list)  # only the candidate produced these

    @property
    def passed(self) -> bool:
        """Every paired output within tolerance, and none unpaired."""
        return (all(o.passed for o in self.outputs) and not self.unpaired_ref
                and not self.unpaired_cand)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready."""
        return {
            "passed": self.passed,
            "outputs": [o.to_dict() for o in self.outputs],
            "unpaired_ref": list(self.unpaired_ref),
            "unpaired_cand": list(self.unpaired_cand),
        }


def _scalar(x) -> Any:
    x = np.asarray(x)
    return float(x) if _is_floatlike(x.dtype) and x.dtype.kind != "c" else x.item()


def compare_arrays(name: str, ref, cand, rtol: Optional[float] = None,
                   atol: Optional[float] = None) -> OutputComparison:
    """Compare one candidate array with its reference (tolerances default by the ref's dtype)."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    rtol, atol = tolerances_for(ref.dtype, rtol, atol)
    fail = dict(
        name=name, dtype=ref.dtype.name, shape_ref=tuple(ref.shape), shape_cand=tuple(cand.shape),
        max_abs_err=None, mean_abs_err=None, max_rel_err=None, worst_index=None, ref_at_worst=None,
        cand_at_worst=None, required_atol=None, rtol=rtol, atol=atol, passed=False,
    )  # fmt: skip
    if ref.shape != cand.shape:
        note = f"shape mismatch {_shape(ref.shape)} vs {_shape(cand.shape)}"
        return OutputComparison(note=note, **fail)
    ref_kind = "f" if _is_floatlike(ref.dtype) else ref.dtype.kind
    cand_kind = "f" if _is_floatlike(cand.dtype) else cand.dtype.kind
    same_kind = ref_kind == cand_kind or {ref_kind, cand_kind} == {"i", "u"}
    if not (same_kind and ref_kind in "biufc" and cand_kind in "biufc"):
        note = f"dtype mismatch {ref.dtype.name} vs {cand.dtype.name}"
        return OutputComparison(note=note, **fail)
    notes = []
    if ref.dtype != cand.dtype:
        notes.append(f"dtype differs: {ref.dtype.name} vs {cand.dtype.name}")

    wide = np.complex128 if "c" in (ref_kind, cand_kind) else np.float64
    r, c = ref.astype(wide), cand.astype(wide)
    with np.errstate(invalid="ignore", over="ignore"):
        r_nan, c_nan = np.isnan(r), np.isnan(c)
        one_nan = r_nan ^ c_nan
        equal = (ref == cand) | (r_nan & c_nan)  # exact equality also covers inf == inf
        abs_ref = np.abs(r)
        if ref_kind in "iub" and cand_kind in "iub":
            # Subtract integers as int64: in float64 a difference of 1 vanishes above 2**53.
            raw = np.abs(cand.astype(np.int64) - ref.astype(np.int64)).astype(np.float64)
        else:
            raw = np.abs(c - r)
        # Statistics leave out NaN-on-one-side elements (the note counts them) so that the size
        # of the other errors stays visible; no atol can pass them, hence their excess is inf.
        diff = np.where(equal | one_nan, 0.0, raw)
        finite_ref = np.where(np.isfinite(abs_ref), abs_ref, 0.0)
        excess = np.where(one_nan, np.inf, diff - rtol * finite_ref)
        # An exactly equal element can never fail: never the "worst" one while any element differs.
        excess = np.where(equal, -np.inf, excess)
        # Non-finite values must match exactly: inf vs -inf is "within" an infinite tolerance.
        finite = np.isfinite(r) & np.isfinite(c)
        ok = equal | ((diff <= atol + rtol * abs_ref) & finite)
        # Relative error where the reference is not zero (there it is undefined: the absolute
        # error says it, and dividing by a tiny floor printed 1e+304).
        rel = np.where((diff == 0) | (finite_ref == 0), 0.0,
                       diff / np.where(finite_ref == 0, 1.0, finite_ref))

    nan_cand, nan_ref = int((c_nan & ~r_nan).sum()), int((r_nan & ~c_nan).sum())
    if nan_cand:
        notes.append(f"NaN in candidate only ({nan_cand})")
    if nan_ref:
        notes.append(f"NaN in reference only ({nan_ref})")
    note = "; ".join(notes) or None

    if ref.size == 0:
        zeros = {"max_abs_err": 0.0, "mean_abs_err": 0.0, "max_rel_err": 0.0,
                 "required_atol": 0.0}
        return OutputComparison(**{**fail, **zeros, "passed": True, "note": note})
    worst = np.unravel_index(int(np.argmax(excess)), ref.shape)
    return OutputComparison(
        name=name,
        dtype=ref.dtype.name,
        shape_ref=tuple(ref.shape),
        shape_cand=tuple(cand.shape),
        max_abs_err=float(diff.max()),
        mean_abs_err=float(diff.mean()),
        max_rel_err=float(rel.max()),
        worst_index=tuple(int(i) for i in worst),
        ref_at_worst=_scalar(ref[worst]),
        cand_at_worst=_scalar(cand[worst]),
        required_atol=max(0.0, float(excess.max())),
        rtol=rtol,
        atol=atol,
        passed=bool(ok.all()),
        note=note,
    )


def _shape(shape) -> str:
    return "(" + ",".join(str(int(d)) for d in shape) + ")"


def compare_outputs(
    ref: Mapping[str, np.ndarray],
    cand: Mapping[str, np.ndarray],
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
) -> ComparisonResult:
    """Compare every output the two sides share by name.

    Names on one side only are listed as unpaired (and make the result fail).
    """
    return ComparisonResult(
        outputs=[compare_arrays(n, ref[n], cand[n], rtol, atol) for n in ref if n in cand],
        unpaired_ref=[n for n in ref if n not in cand],
        unpaired_cand=[n for n in cand if n not in ref],
    )


CRITERION = "|cand - ref| <= atol + rtol * |ref|"  # per element, numpy.allclose's test


def applied_tolerances(outputs: Iterable[OutputComparison]) -> List[Dict[str, Any]]:
    """The distinct (dtype, atol, rtol) the comparisons applied, sorted: the criterion's data."""
    tols = sorted({(o.dtype, o.atol, o.rtol) for o in outputs})
    return [{"dtype": d, "atol": a, "rtol": r} for d, a, r in tols]


def criterion_lines(outputs: Iterable[OutputComparison]) -> List[str]:
    """The pass test and the tolerances it applied (one line per dtype), for a summary.

    Stating it keeps "PASSED" next to a max rel err above rtol from reading as a contradiction:
    rel err is |cand - ref| / |ref|, and near zero it is atol that lets an element pass.
    """
    lines = [f"criterion (every element): {CRITERION}"]
    for t in applied_tolerances(outputs):
        lines.append(f"  {t['dtype']}: atol={t['atol']:g} rtol={t['rtol']:g}")
    return lines


def _num(x: Optional[float]) -> str:
    if x is None:
        return "-"
    return f"{x:.2e}" if math.isfinite(x) else str(x)


def _val(x) -> str:
    return f"{x:.7g}" if isinstance(x, float) else repr(x)


def _fit(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` with an ellipsis in the middle.

    ONNX tensor names share long prefixes (``/decoder/up.3/...``), so both ends carry information.
    """
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def format_comparison_table(result: ComparisonResult, width: int = 80,
                            show_worst: bool = False) -> str:
    """A plain-text table, one row per output, then notes and a verdict line.

    Every line fits in ``width`` columns (for ``width`` >= 58, the narrowest that leaves room for
    the name column); long output names are shortened with an ellipsis, long notes wrapped.
    ``show_worst`` notes the worst element of passing outputs too (failing ones always get it).
    """
    cols = [("max abs", 9), ("mean abs", 9), ("max rel", 9), ("req atol", 9), ("", 4)]
    fixed = sum(w + 2 for _, w in cols)
    name_w = max(8, width - fixed)

    def row(name: str, cells: List[str]) -> str:
        padded = "".join("  " + c.rjust(w) for c, (_, w) in zip(cells, cols))
        return _fit(name, name_w).ljust(name_w) + padded

    lines = [row("output", [h for h, _ in cols]).rstrip(), "-" * min(width, name_w + fixed)]
    notes = []
    for o in result.outputs:
        cells = [_num(o.max_abs_err), _num(o.mean_abs_err), _num(o.max_rel_err),
                 _num(o.required_atol)]
        lines.append(row(o.name, cells + ["PASS" if o.passed else "FAIL"]))
        if o.note:
            notes.append(f"{o.name}: {o.note}")
        if (show_worst or not o.passed) and o.worst_index is not None:
            notes.append(f"{o.name}: worst at {list(o.worst_index)}: ref {_val(o.ref_at_worst)}, "
                         f"got {_val(o.cand_at_worst)}")
    for n in result.unpaired_ref:
        lines.append(row(n, ["-"] * 4 + ["FAIL"]))
        notes.append(f"{n}: missing from the candidate")
    for n in result.unpaired_cand:
        lines.append(row(n, ["-"] * 4 + ["FAIL"]))
        notes.append(f"{n}: not produced by the reference")

    tols = sorted({(o.dtype, o.rtol, o.atol) for o in result.outputs})
    if tols:
        notes.append("tolerance: " + "; ".join(f"{d} rtol={r:g} atol={a:g}" for d, r, a in tols))
    failed = (sum(not o.passed for o in result.outputs) + len(result.unpaired_ref)
              + len(result.unpaired_cand))
    total = len(result.outputs) + len(result.unpaired_ref) + len(result.unpaired_cand)
    for n in notes:
        lines += textwrap.wrap(n, width, subsequent_indent="    ", break_on_hyphens=False) or [""]
    lines.append(f"PASS: all {total} outputs match" if result.passed
                 else f"FAIL: {failed} of {total} outputs differ")
    return "\n".join(lines)
