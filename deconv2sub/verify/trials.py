"""Trials: the input shapes and data each model is compared at, and the inputs both accept.

When dims are symbolic the models are compared at several input shapes (:func:`plan_trials`), so
that a size accidentally baked into a graph shows up; each trial ``i`` gets seeded random data
(seed ``seed + i``) or, with ``--inputs``, the file's arrays (:func:`make_trial_feeds`).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from .inputs import TensorSpec, load_npz, make_feeds, resolve_shapes, symbolic_dim_values
from .options import VerifyOptions

__all__ = ["make_trial_feeds", "merge_input_specs", "plan_trials", "shape_failure", "shapes_text"]

#: input name -> shape, of one trial
Shapes = Dict[str, Tuple[int, ...]]


def plan_trials(specs: Sequence[TensorSpec], options: VerifyOptions) -> List[Shapes]:
    """Input shapes per trial.

    By default (``options.trials`` None) 2 trials when some dim is symbolic, else 1, and a trial
    whose shapes repeat an earlier one is dropped. An explicit trial count is honoured as given:
    trials with the same shapes still differ by their data (each trial ``i`` uses seed
    ``seed + i``).
    """
    symbolic = any(s.shape is None or any(not isinstance(d, int) for d in s.shape)
                   for s in specs)
    explicit = options.trials is not None
    count = options.trials if explicit else (2 if symbolic else 1)
    trials: List[Shapes] = []
    for i in range(max(1, count)):
        shapes = resolve_shapes(specs, options.input_shapes, trial=i)
        if explicit or shapes not in trials:
            trials.append(shapes)
    return trials


def make_trial_feeds(specs: Sequence[TensorSpec], options: VerifyOptions
                     ) -> Tuple[List[Dict[str, np.ndarray]], List[Shapes], List[Optional[int]]]:
    """Feeds, shapes and seeds per trial: from ``options.inputs_npz`` (one trial) or seeded data."""
    if options.inputs_npz:
        feeds = load_npz(options.inputs_npz, specs)
        return [feeds], [{k: tuple(v.shape) for k, v in feeds.items()}], [None]
    shapes_list = plan_trials(specs, options)
    seeds = [options.seed + i for i in range(len(shapes_list))]
    feeds_list = [make_feeds(specs, s, seed=seed, val_range=options.val_range)
                  for s, seed in zip(shapes_list, seeds)]
    return feeds_list, shapes_list, seeds


def merge_input_specs(reference: Sequence[TensorSpec],
                      candidate: Sequence[TensorSpec]) -> List[TensorSpec]:
    """The inputs both models accept, in the reference's order; InputError if incompatible.

    Names and element types must match; ranks must agree where both are known, and an axis fixed in
    one model is fixed in the merged spec (two different fixed sizes are incompatible).
    """
    cand = {s.name: s for s in candidate}
    ref_names = [s.name for s in reference]
    missing = [n for n in ref_names if n not in cand]
    extra = [n for n in cand if n not in ref_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append("the candidate lacks " + ", ".join(f"'{n}'" for n in missing))
        if extra:
            parts.append("only the candidate has " + ", ".join(f"'{n}'" for n in extra))
        raise InputError("incompatible inputs: " + "; ".join(parts))
    merged = []
    for r in reference:
        c = cand[r.name]
        if r.dtype != c.dtype:
            raise InputError(f"incompatible inputs: '{r.name}' is {r.dtype.name} in the original "
                             f"but {c.dtype.name} in the candidate")
        if r.shape is None or c.shape is None:
            merged.append(TensorSpec(r.name, r.dtype, r.shape if c.shape is None else c.shape))
            continue
        shape_error = InputError(f"incompatible inputs: '{r.name}' has shape {r.shape_str()} in "
                                 f"the original but {c.shape_str()} in the candidate")
        if len(r.shape) != len(c.shape):
            raise shape_error
        dims = []
        for a, b in zip(r.shape, c.shape):
            if isinstance(a, int) and isinstance(b, int) and a != b:
                raise shape_error
            dims.append(a if isinstance(a, int) or not isinstance(b, int) else b)
        merged.append(TensorSpec(r.name, r.dtype, tuple(dims)))
    return merged


def shapes_text(shapes: Mapping[str, Tuple[int, ...]], sep: str = "x") -> str:
    """E.g. ``x:1x3x16x16, skip:1x2x32x32``."""
    return ", ".join(f"{k}:{sep.join(map(str, v))}" for k, v in shapes.items())


def shape_failure(specs: Sequence[TensorSpec], options: VerifyOptions, shapes: Shapes, tried: int,
                  err: InputError) -> InputError:
    """The error for an original that runs at none of the trial shapes.

    It says which symbolic dims were set to what, and the ``--input-shape`` options that would set
    them; ``err`` itself when no dim is symbolic.
    """
    free = symbolic_dim_values(specs, shapes, options.input_shapes)
    if not free:
        return err
    values = [f"{label}={value}" for label, value in free.items()]
    others = f"; {tried - 1} other size(s) tried too" if tried > 1 else ""
    fix = " ".join(f"--input-shape {name}:{','.join(map(str, v))}" for name, v in shapes.items())
    return InputError(f"the original model fails at the trial input shapes {shapes_text(shapes)} "
                      f"(symbolic dims {', '.join(values)}{others}): {err}; give sizes it "
                      f"accepts, e.g. {fix} with the symbolic dims changed")

