"""Running the models to compare: on which runtime, every trial, and the tolerances applied there.

A failure to *load* a model is marked ``err.stage = "load"``
(:attr:`deconv2sub.errors.Deconv2SubError.stage`): ``validate`` treats a candidate that does not
load as a broken input, one that loads but fails to run as a failed comparison.
"""

from __future__ import annotations

import gc
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..progress import ProgressFn, step
from ..runtime.base import Runner, RuntimeInfo
from ..runtime.runners import TOOLCHAINS, create_runner
from .compare import ComparisonResult, compare_arrays, compare_outputs, tolerances_for
from .options import VerifyOptions

__all__ = ["TOOLCHAIN_TOLERANCES", "compare_for_runtime", "load_runner", "reference_runtime",
           "run_all"]

#: default tolerances when a deployment toolchain runs the candidate (its kernels, e.g. Winograd
#: convolutions, sum in other orders than ONNX Runtime's): float32 outputs within 1e-3 relative
TOOLCHAIN_TOLERANCES = (1e-3, 1e-4)

# OpenVINO's CPU plugin computes float64 models in float32: holding them to float64 tolerances would
# measure the runtime's precision, not the models. Such outputs get float32 tolerances, with a note.
_OPENVINO_F64_NOTE = "OpenVINO computes float64 in float32: float32 tolerances"


def reference_runtime(options: VerifyOptions) -> str:
    """The runtime that runs the original (see :class:`~.options.VerifyOptions`)."""
    if options.reference_runtime:
        return options.reference_runtime
    return "onnxruntime" if options.runtime in TOOLCHAINS else options.runtime


def load_runner(model, options: VerifyOptions, what: str, progress: Optional[ProgressFn] = None,
                runtime: Optional[str] = None) -> Runner:
    """The runner of ``model`` on ``runtime`` (default ``options.runtime``).

    A failure to load is raised with ``err.stage = "load"``.
    """
    runtime = runtime or options.runtime
    step(progress, f"loading {what} on {runtime}")
    provider = options.provider if runtime in ("onnxruntime", "openvino") else "cpu"
    try:
        return create_runner(model, runtime=runtime, provider=provider,
                             require_cuda=options.require_cuda and runtime == options.runtime,
                             optimize=options.optimize, what=what)
    except InputError as err:
        err.stage = "load"
        raise


def run_all(model, feeds_list: Sequence[Mapping[str, np.ndarray]], options: VerifyOptions,
            what: str, output_names: Optional[Sequence[str]] = None,
            progress: Optional[ProgressFn] = None, runtime: Optional[str] = None,
            ) -> Tuple[List[Dict[str, np.ndarray]], RuntimeInfo]:
    """Run ``model`` on every feed (on ``runtime``, default ``options.runtime``), then free it.

    Returns the outputs per feed and where the model ran. A failure to load (not to run) is
    raised with ``err.stage = "load"``.
    """
    runner = load_runner(model, options, what, progress, runtime)
    results = []
    for i, feeds in enumerate(feeds_list):
        step(progress, f"running {what}", i, len(feeds_list))
        results.append(runner.run(feeds, output_names))
    step(progress, f"running {what}", len(feeds_list), len(feeds_list))
    info = runner.info
    del runner
    gc.collect()
    return results, info


def compare_for_runtime(r: Mapping[str, np.ndarray], c: Mapping[str, np.ndarray],
                        options: VerifyOptions) -> ComparisonResult:
    """Compare outputs ``r`` (original) and ``c`` (candidate) with the options' tolerances.

    Without tolerances given, a toolchain's outputs are held to its own (RKNN computes in float16)
    or to :data:`TOOLCHAIN_TOLERANCES`, and OpenVINO's float64 outputs to float32's (with a note).
    """
    if options.runtime in TOOLCHAINS and options.rtol is None and options.atol is None:
        from ..toolchains import tolerances

        return compare_outputs(r, c, *tolerances(options.runtime, TOOLCHAIN_TOLERANCES))
    cmp = compare_outputs(r, c, options.rtol, options.atol)
    if options.runtime == "openvino" and options.rtol is None and options.atol is None:
        for k, o in enumerate(cmp.outputs):
            if o.dtype == "float64":
                rtol, atol = tolerances_for(np.float32)
                redo = compare_arrays(o.name, r[o.name], c[o.name], rtol, atol)
                redo.note = "; ".join(filter(None, [redo.note, _OPENVINO_F64_NOTE]))
                cmp.outputs[k] = redo
    return cmp
