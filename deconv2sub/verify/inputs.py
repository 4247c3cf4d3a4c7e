"""Model inputs: what the model declares, which concrete shapes to run it with, and test data.

Verification runs the original and the rewritten model on the *same* feeds, so everything here
is deterministic (seeded) and independent of the runtime. A second "trial" shape exists because
a rewrite can silently bake one input size into the graph (a constant Reshape target, say); running
at two different sizes catches that.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import helper

from ..errors import InputError, OutputError

log = logging.getLogger(__name__)

Dim = Union[int, str, None]


@dataclass(frozen=True)
class TensorSpec:
    """A graph input as the model declares it.

    ``shape`` holds, per axis, an ``int`` (fixed), a ``str`` (symbolic ``dim_param``, shared by
    every axis with the same name) or ``None`` (unknown); ``shape`` itself is ``None`` when even
    the rank is unknown.
    """

    name: str
    dtype: np.dtype
    shape: Optional[Tuple[Dim, ...]]

    def shape_str(self) -> str:
        """E.g. ``(N,3,?,224)``; ``(unknown rank)`` without a shape."""
        if self.shape is None:
            return "(unknown rank)"
        return "(" + ",".join("?" if d is None else str(d) for d in self.shape) + ")"


def model_input_specs(model: onnx.ModelProto) -> List[TensorSpec]:
    """The inputs a caller must feed, in graph order.

    Initializers are left out even when listed as graph inputs: in IR < 4 every initializer is
    listed there, and in IR >= 4 such an input is an overridable default. Feeding random data
    to either would change the weights, not test the model.
    """
    graph = model.graph
    initializers = ({t.name for t in graph.initializer}
                    | {t.values.name for t in graph.sparse_initializer})
    specs = []
    for vi in graph.input:
        if vi.name in initializers:
            continue
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            raise InputError(
                f"model input '{vi.name}' is a {kind or 'untyped value'}, not a tensor; only "
                "tensor inputs are supported"
            )
        tt = vi.type.tensor_type
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        except (KeyError, ValueError):
            raise InputError(f"model input '{vi.name}' has unsupported element type "
                             f"{tt.elem_type}") from None
        shape = tuple(_dim(d) for d in tt.shape.dim) if tt.HasField("shape") else None
        specs.append(TensorSpec(vi.name, np.dtype(dtype), shape))
    return specs


def _dim(d) -> Dim:
    which = d.WhichOneof("value")
    if which == "dim_value":
        return int(d.dim_value)
    if which == "dim_param" and d.dim_param:
        return d.dim_param
    return None


_SHAPE_SYNTAX = "expected NAME:D1,D2,... (e.g. input:1,3,224,224 or input:1x3x224x224)"


def parse_input_shapes(values: Iterable[str]) -> Dict[str, Tuple[int, ...]]:
    """Parse ``NAME:1,3,224,224`` (or ``NAME:1x3x224x224``) strings into ``{name: shape}``.

    Tensor names may themselves contain ':' (TensorFlow exports: ``input:0``), so the name ends
    at the *last* colon. Every dimension must be >= 1 (InputError otherwise).
    """
    shapes: Dict[str, Tuple[int, ...]] = {}
    for value in values:
        name, sep, dims = value.rpartition(":")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"bad input shape '{value}': {_SHAPE_SYNTAX}")
        parts = [p.strip() for p in re.split(r"[,xX]", dims)]
        if not all(p.isdigit() for p in parts):
            raise InputError(f"bad input shape '{value}': dimensions must be positive integers; "
                             f"{_SHAPE_SYNTAX}")
        if any(int(p) == 0 for p in parts):
            # An empty tensor runs through any graph without computing anything: a comparison on it
            # passes whatever the rewrite did, so it must not count as a verification.
            raise InputError(f"bad input shape '{value}': a dimension of 0 makes an empty tensor, "
                             "on which a comparison proves nothing; give sizes >= 1")
        if name in shapes:
            raise InputError(f"input shape for '{name}' given more than once")
        shapes[name] = tuple(int(p) for p in parts)
    return shapes


def _default_dim(axis: int, trial: int, scale: float = 1) -> int:
    """Size for a symbolic/unknown axis: axis 0 (batch) 1, 2, 3, ...; other axes 16, 32, 48, ...

    Other axes are multiplied by ``scale`` (see :func:`trial_shape_candidates`). Later trials use
    other sizes so that a graph which baked in the first size fails the comparison. They stay
    multiples of 16 because real models often need that (U-Nets concatenate skips after four
    halvings); odd sizes are covered by the test suite and can be given with --input-shape.
    """
    return 1 + trial if axis == 0 else max(1, int(16 * (trial + 1) * scale))


def _other_size(axis: int, given: int, trial: int) -> int:
    """Trial ``trial``'s size for a symbolic axis that the user set to ``given`` (trial 0 keeps it).

    The batch grows by one per trial; other axes are multiplied by ``trial + 1``, which keeps every
    divisibility the given size has and every tie of the form ``a = k * b`` between two inputs.
    """
    return given + trial if axis == 0 else given * (trial + 1)


def check_shape(spec: TensorSpec, shape: Tuple[int, ...], source: str) -> None:
    """Raise InputError unless ``shape`` fits what the model declares for ``spec``."""
    if spec.shape is None:
        return
    if len(shape) != len(spec.shape):
        raise InputError(
            f"input '{spec.name}': {source} has rank {len(shape)} {tuple(shape)}, "
            f"but the model declares rank {len(spec.shape)} {spec.shape_str()}"
        )
    for axis, (want, got) in enumerate(zip(spec.shape, shape)):
        if isinstance(want, int) and want != got:
            raise InputError(
                f"input '{spec.name}': {source} gives {got} for axis {axis}, "
                f"but the model fixes it to {want} {spec.shape_str()}"
            )


def _given_shape(spec: TensorSpec, given: Tuple[int, ...], trial: int) -> Tuple[int, ...]:
    """The user's shape for trial 0; later trials vary its symbolic axes (:func:`_other_size`)."""
    if trial == 0 or spec.shape is None:
        return tuple(int(d) for d in given)
    return tuple(int(g) if isinstance(d, int) else _other_size(axis, int(g), trial)
                 for axis, (d, g) in enumerate(zip(spec.shape, given)))


def resolve_shapes(
    specs: Iterable[TensorSpec], overrides: Mapping[str, Tuple[int, ...]], trial: int = 0,
    scales: Optional[Mapping[str, float]] = None,
) -> Dict[str, Tuple[int, ...]]:
    """Concrete shape for every input.

    Overrides win (after checking them against rank and fixed dims) in trial 0; later trials vary
    their symbolic axes (:func:`_other_size`), so that a size baked into a rewrite still shows up. A
    symbolic dim gets one value across all inputs (an override of ``batch`` on one input applies to
    every input using ``batch``), because the model may rely on them being equal. Remaining unknown
    dims get ``_default_dim(axis, trial)``, the non-batch ones times ``scales[input]`` (default 1).
    """
    specs = list(specs)
    scales = scales or {}
    known = {s.name for s in specs}
    unknown = [n for n in overrides if n not in known]
    if unknown:
        raise InputError(f"shape given for '{unknown[0]}', which is not a model input "
                         f"(inputs: {', '.join(sorted(known)) or 'none'})")

    bound: Dict[str, Tuple[int, str]] = {}  # dim_param -> (value, input that set it)
    given: Dict[str, Tuple[int, ...]] = {}
    for spec in specs:
        if spec.name not in overrides:
            continue
        shape = tuple(int(d) for d in overrides[spec.name])
        check_shape(spec, shape, "the given shape")
        shape = given[spec.name] = _given_shape(spec, shape, trial)
        for want, got in zip(spec.shape or (), shape):
            if isinstance(want, str):
                prev = bound.setdefault(want, (got, spec.name))
                if prev[0] != got:
                    raise InputError(f"dimension '{want}' is {prev[0]} for input '{prev[1]}' "
                                     f"but {got} for input '{spec.name}'")

    result: Dict[str, Tuple[int, ...]] = {}
    for spec in specs:
        if spec.name in given:
            result[spec.name] = given[spec.name]
            continue
        if spec.shape is None:
            raise InputError(f"input '{spec.name}' has unknown rank; give its shape explicitly "
                             "(NAME:D1,D2,...)")
        shape = []
        scale = scales.get(spec.name, 1)
        for axis, d in enumerate(spec.shape):
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str):
                shape.append(bound.setdefault(d, (_default_dim(axis, trial, scale), spec.name))[0])
            else:
                shape.append(_default_dim(axis, trial, scale))
        result[spec.name] = tuple(shape)
    return result


def symbolic_dim_values(specs: Iterable[TensorSpec], shapes: Mapping[str, Tuple[int, ...]],
                        overrides: Optional[Mapping[str, Tuple[int, ...]]] = None
                        ) -> Dict[str, int]:
    """``{label: value in shapes}`` of the input dims that are neither fixed nor given.

    The label is the ``dim_param`` name, or ``input[axis]`` for an unnamed dim; each name once, in
    input order; inputs in ``overrides`` are left out.
    """
    values: Dict[str, int] = {}
    for spec in specs:
        if spec.name in (overrides or {}) or spec.shape is None:
            continue
        for axis, d in enumerate(spec.shape):
            label = d if isinstance(d, str) else (f"{spec.name}[{axis}]" if d is None else None)
            if label is not None:
                values.setdefault(label, int(shapes[spec.name][axis]))
    return values


def _scale_groups(specs: Sequence[TensorSpec],
                  overrides: Mapping[str, Tuple[int, ...]]) -> List[List[str]]:
    """Inputs whose non-batch symbolic dims are scaled together.

    An input with such dims and not given by the user is one group, merged with every other input
    that shares a dim name with it.
    """
    groups: List[Tuple[set, List[str]]] = []  # (dim names, input names)
    for spec in specs:
        if spec.name in overrides or spec.shape is None:
            continue
        free = [d for d in spec.shape[1:] if not isinstance(d, int)]
        if not free:
            continue
        names = {d for d in free if isinstance(d, str)}
        merged = [g for g in groups if g[0] & names]
        for g in merged:
            groups.remove(g)
        groups.append((names.union(*[g[0] for g in merged]),
                       [n for g in merged for n in g[1]] + [spec.name]))
    return [g[1] for g in groups]


#: Scale factors :func:`trial_shape_candidates` tries per group of inputs (16 * 0.5 is still an
#: integer), and how many sets at most.
TRIAL_SCALES = (1, 0.5, 2, 4, 8)
MAX_TRIAL_CANDIDATES = 16
#: A scaled candidate with an input of more elements than this is not tried (3-D inputs grow fast).
MAX_TRIAL_ELEMENTS = 1 << 24


def trial_shape_candidates(
    specs: Sequence[TensorSpec], overrides: Mapping[str, Tuple[int, ...]], trial: int = 0
) -> List[Dict[str, Tuple[int, ...]]]:
    """Input shapes to try for trial ``trial``, the plain :func:`resolve_shapes` first.

    The graph may tie the sizes of different inputs in ways their dim names do not say (a U-Net's
    skip input is twice the size of the tensor it is concatenated with), so when the model fails at
    the plain shapes, verification tries these next: every group of inputs (:func:`_scale_groups`)
    has its non-batch symbolic dims scaled by one of ``TRIAL_SCALES``, fewest elements first (at
    most ``MAX_TRIAL_CANDIDATES`` sets in all, none with an input above ``MAX_TRIAL_ELEMENTS``).
    A single group scaled up covers models that need sizes divisible by more than 16.
    """
    specs = list(specs)
    groups = _scale_groups(specs, overrides)
    plain = resolve_shapes(specs, overrides, trial)
    combos = itertools.islice(itertools.product(TRIAL_SCALES, repeat=len(groups)), 4096)
    scaled = []
    for combo in combos:
        scales = {n: f for f, group in zip(combo, groups) for n in group}
        shapes = resolve_shapes(specs, overrides, trial, scales)
        sizes = [int(np.prod(v)) for v in shapes.values()]
        if max(sizes, default=0) <= MAX_TRIAL_ELEMENTS:
            scaled.append((sum(sizes), len(scaled), shapes))
    out = [plain]
    for _, _, shapes in sorted(scaled, key=lambda t: t[:2]):
        if shapes not in out:
            out.append(shapes)
        if len(out) >= MAX_TRIAL_CANDIDATES:
            break
    return out


def check_input_shapes(model: onnx.ModelProto, overrides: Mapping[str, Sequence[int]]) -> None:
    """InputError when ``overrides`` name an input the model lacks, or contradict its shape."""
    specs = {s.name: s for s in model_input_specs(model)}
    unknown = [n for n in overrides if n not in specs]
    if unknown:
        raise InputError(f"shape given for '{unknown[0]}', which is not a model input "
                         f"(inputs: {', '.join(sorted(specs)) or 'none'})")
    for name, shape in overrides.items():
        check_shape(specs[name], tuple(shape), "the given shape")


def with_input_shapes(model: onnx.ModelProto,
                      overrides: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have the given concrete shapes.

    The shapes are checked with :func:`check_input_shapes`. It copies the weights too: for shape
    inference of a big model, pass a skeleton (see :func:`deconv2sub.api.infer_shapes`).
    """
    check_input_shapes(model, overrides)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in out.graph.input:
        if vi.name in overrides:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for d in overrides[vi.name]:
                dims.add().dim_value = int(d)
    return out


def make_feeds(
    specs: Iterable[TensorSpec],
    shapes: Mapping[str, Tuple[int, ...]],
    *,
    seed: int = 0,
    val_range: Optional[Tuple[float, float]] = None,
) -> Dict[str, np.ndarray]:
    """Seeded random data for every input.

    Floats: standard normal (or uniform in ``val_range``). Integers: [0, 4) unless ``val_range``
    is given, because integer inputs are often indices/sizes and must stay small and valid.
    """
    if val_range is not None and not val_range[0] <= val_range[1]:
        raise InputError(f"bad value range {val_range}: low must not exceed high")
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        if spec.name not in shapes:
            raise InputError(f"no shape for input '{spec.name}'")
        shape, dt = tuple(shapes[spec.name]), spec.dtype
        # ml_dtypes floats have kind "V"
        if dt.kind == "f" or dt.name.startswith(("bfloat16", "float8")):
            if val_range is None:
                data = rng.standard_normal(shape)
            else:
                data = rng.uniform(val_range[0], val_range[1], shape)
        elif dt.kind in "iu":
            if val_range is None:
                lo, hi = 0, 3
            else:
                lo, hi = int(np.ceil(val_range[0])), int(np.floor(val_range[1]))
            if lo > hi:
                raise InputError(f"input '{spec.name}' is {dt.name}, but the value range "
                                 f"{val_range} holds no integer")
            if dt.kind == "u" and lo < 0:
                raise InputError(f"input '{spec.name}' is {dt.name}, but the value range "
                                 f"{val_range} is negative")
            data = rng.integers(lo, hi, shape, endpoint=True)
        elif dt.kind == "b":
            data = rng.random(shape) < 0.5
        else:
            raise InputError(f"cannot generate random data for input '{spec.name}' of type "
                             f"{dt.name}; provide it in an .npz file")
        feeds[spec.name] = np.array(data, dtype=dt, order="C")
    return feeds


def load_npz(path: Union[str, os.PathLike], specs: Iterable[TensorSpec]) -> Dict[str, np.ndarray]:
    """Read input data for the model from an ``.npz`` file.

    Every model input must be present, with a shape the model accepts; arrays are cast to the
    model's dtype when numpy calls that safe or same-kind (float64 -> float32 is fine, float ->
    int is not). Extra arrays are ignored with a logged warning.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as e:  # OSError, BadZipFile, ValueError (pickled object arrays), ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"cannot read input data from '{path}': {msg}") from None
    specs = list(specs)
    feeds = {}
    for spec in specs:
        if spec.name not in arrays:
            raise InputError(f"'{path}' has no array for model input '{spec.name}' "
                             f"(it has: {', '.join(sorted(arrays)) or 'nothing'})")
        arr = arrays[spec.name]
        if arr.dtype != spec.dtype:
            if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
                raise InputError(f"input '{spec.name}' in '{path}' is {arr.dtype}, which cannot "
                                 f"be cast to {spec.dtype}")
        check_shape(spec, arr.shape, f"'{path}'")
        feeds[spec.name] = np.array(arr, dtype=spec.dtype, order="C")
    extra = sorted(set(arrays) - set(feeds))
    if extra:
        log.warning("ignoring arrays in '%s' that are not model inputs: %s", path, ", ".join(extra))
    return feeds


def save_npz(path: Union[str, os.PathLike], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` readable by ``np.load``, at exactly ``path``.

    Written by hand rather than with ``np.savez`` because that appends ``.npz`` to the path and
    rejects keys that collide with its own parameters (``file``, ``allow_pickle``).
    """
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in arrays.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(arr), allow_pickle=False)
    except OSError as e:
        raise OutputError(f"cannot write '{path}': {e.strerror or e}") from None
