"""Files: the models ``validate`` compares, the inputs and outputs that reproduce a failure.

The latter are ``--save-inputs`` and ``--save-outputs``.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import onnx

from ..errors import OutputError
from ..io.load import load_model
from .inputs import save_npz
from .results import VerificationResult

__all__ = ["load_for_comparison", "save_repro_inputs", "save_repro_outputs"]


def load_for_comparison(path: str, what: str = "the model") -> onnx.ModelProto:
    """Load a model file for ``validate``.

    InputError (one line) when it is missing, unreadable, empty, truncated or not an ONNX model. The
    ONNX checker is not run: it rejects models that runtimes accept (e.g. outputs without a declared
    shape); whether the runtime can load the model shows next.
    """
    return load_model(path)


def _check_writable(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(f"{path} is a directory; give a file name")
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")


def save_repro_inputs(result: VerificationResult, path: str) -> int:
    """Save the inputs of the trial worth reproducing (``repro_trial``) as .npz for ``--inputs``.

    Returns the trial index.
    """
    _check_writable(path)
    if not result.inputs:
        raise OutputError(f"no inputs to save to {path}")
    i = result.repro_trial
    save_npz(path, result.inputs[i])
    return i


def save_repro_outputs(result: VerificationResult, path: str) -> Optional[int]:
    """Save both models' outputs of ``repro_trial`` as .npz (``original/NAME``, ``candidate/NAME``).

    Needs ``VerifyOptions.keep_outputs``; only the original's when the candidate did not run.
    Returns the trial index, or None when there was nothing to save (nothing is written then).
    """
    _check_writable(path)
    i = result.repro_trial
    arrays: Dict[str, Any] = {}
    if i < len(result.outputs_ref):
        arrays.update({f"original/{k}": v for k, v in result.outputs_ref[i].items()})
    if i < len(result.outputs_cand):
        arrays.update({f"candidate/{k}": v for k, v in result.outputs_cand[i].items()})
    if not arrays:
        return None
    save_npz(path, arrays)
    return i

