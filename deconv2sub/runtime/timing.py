"""Latency of models on a runtime, as deployed (graph optimisations on), measured fairly.

:func:`bench_models` loads every model, warms each up, then times ``runs`` rounds. With
``interleave`` each round runs every model once, in an order that alternates between rounds (A B,
B A, ...), so that drift — thermal throttling, a noisy neighbour, frequency scaling — affects all
models alike instead of whichever happened to run last. Reported: median, p90, min and mean per
model, and ratios of medians.

:func:`time_runners` is that loop alone, over runners already loaded: ``bench_models`` and the
measured chooser (:mod:`deconv2sub.targets.autotune`) both time through it.

Used by ``deconv2sub bench`` and reusable from benchmark scripts::

    from deconv2sub.runtime.timing import bench_models
    res = bench_models({"original": m0, "candidate": m1}, feeds, runs=50)
    print(res.speedup("original", "candidate"))
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressFn, step
from ..verify.inputs import make_feeds, model_input_specs, resolve_shapes
from .base import ModelArg, Runner, RuntimeInfo
from .runners import create_runner

__all__ = ["BenchResult", "BenchReport", "bench_models", "percentile", "random_feeds",
           "time_runners"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (numpy's default)."""
    if not values:
        raise ValueError("no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass
class BenchResult:
    """Timings of one model, in seconds."""

    label: str
    runtime: RuntimeInfo
    times: List[float] = field(default_factory=list)
    warmup: int = 0
    load_s: float = 0.0

    @property
    def median(self) -> float:
        """Median latency."""
        return float(statistics.median(self.times))

    @property
    def p90(self) -> float:
        """90th percentile latency."""
        return percentile(self.times, 90)

    @property
    def min(self) -> float:
        """Fastest run."""
        return float(min(self.times))

    @property
    def mean(self) -> float:
        """Mean latency."""
        return float(statistics.fmean(self.times))

    def to_dict(self) -> dict:
        """JSON-ready: latencies in milliseconds."""
        return {"label": self.label, "runtime": self.runtime.describe(),
                "device": self.runtime.device, "runs": len(self.times), "warmup": self.warmup,
                "load_s": self.load_s,
                "median_ms": self.median * 1e3, "p90_ms": self.p90 * 1e3, "min_ms": self.min * 1e3,
                "mean_ms": self.mean * 1e3, "times_ms": [t * 1e3 for t in self.times]}


@dataclass
class BenchReport:
    """The timings of every model of one :func:`bench_models` call, and how they were taken."""

    results: Dict[str, BenchResult]
    input_shapes: Dict[str, tuple]
    optimize: bool
    interleave: bool
    threads: Optional[int]

    def speedup(self, baseline: str, other: str) -> float:
        """How many times faster ``other`` is than ``baseline``: ratio of median latencies."""
        return self.results[baseline].median / self.results[other].median

    @property
    def runtime(self) -> RuntimeInfo:
        """Where the first model ran."""
        return next(iter(self.results.values())).runtime

    def to_dict(self) -> dict:
        """JSON-ready; with two models or more, the speedup of the second over the first."""
        labels = list(self.results)
        d = {"runtime": self.runtime.describe(), "device": self.runtime.device,
             "graph_optimizations": self.optimize, "interleaved": self.interleave,
             "threads": self.threads,
             "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
             "models": [r.to_dict() for r in self.results.values()]}
        if len(labels) >= 2:
            d["speedup"] = self.speedup(labels[0], labels[1])
            d["speedup_definition"] = f"median({labels[0]}) / median({labels[1]})"
        return d


def random_feeds(model, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, seed: int = 0,
                 val_range=None) -> Dict[str, np.ndarray]:
    """Seeded random inputs for ``model`` (symbolic dims from ``input_shapes``, else defaults)."""
    specs = model_input_specs(model)
    shapes = resolve_shapes(specs, {k: tuple(v) for k, v in (input_shapes or {}).items()})
    return make_feeds(specs, shapes, seed=seed, val_range=val_range)


def bench_models(
    models: Mapping[str, ModelArg],
    feeds: Mapping[str, np.ndarray],
    runtime: str = "onnxruntime",
    provider: str = "auto",
    warmup: int = 5,
    runs: int = 20,
    threads: Optional[int] = None,
    interleave: bool = True,
    *,
    require_cuda: bool = False,
    optimize: bool = True,
    progress: Optional[ProgressFn] = None,
) -> BenchReport:
    """Time every model of ``models`` (label → ModelProto, bytes or path) on the same ``feeds``.

    ``optimize``: ONNX Runtime graph optimisations (on: as deployed). ``threads``: intra-op threads
    (None: the runtime's default). Without ``interleave`` the models are timed one after another.
    """
    if not models:
        raise InputError("nothing to benchmark")
    if runs < 1 or warmup < 0:
        raise InputError(f"need runs >= 1 and warmup >= 0 (got runs {runs}, warmup {warmup})")
    runners, results = {}, {}
    try:
        for label, model in models.items():
            step(progress, f"loading {label}")
            t = time.perf_counter()
            runner = create_runner(model, runtime=runtime, provider=provider,
                                   require_cuda=require_cuda, optimize=optimize, threads=threads,
                                   what=f"the {label} model")
            missing = [s.name for s in runner.input_specs() if s.name not in feeds]
            if missing:
                raise InputError(
                    f"the {label} model needs input '{missing[0]}', which the feeds lack")
            runners[label] = runner
            results[label] = BenchResult(label, runner.info, warmup=warmup,
                                         load_s=time.perf_counter() - t)
        # Each runner gets exactly its own inputs (a candidate may not take every input of the
        # original).
        own = {label: {s.name: feeds[s.name] for s in r.input_specs()}
               for label, r in runners.items()}
        times = time_runners(runners, own, warmup, runs, interleave, progress)
        for label, values in times.items():
            results[label].times.extend(values)
    finally:
        runners.clear()
        gc.collect()
    shapes = {k: tuple(v.shape) for k, v in feeds.items()}
    return BenchReport(results, shapes, optimize, interleave, threads)


def time_runners(
    runners: Mapping[str, Runner],
    feeds: Mapping[str, Mapping[str, np.ndarray]],
    warmup: int,
    runs: int,
    interleave: bool = True,
    progress: Optional[ProgressFn] = None,
) -> Dict[str, List[float]]:
    """The timing loop: seconds of each of ``runs`` calls per runner (label → runner).

    Each runner is called on its own ``feeds[label]``, ``warmup`` times untimed first
    (:meth:`~.base.Runner.run_for_timing`), one runner after another. With ``interleave`` each
    round then runs every runner once, in an order that alternates between rounds; without, the
    runners are timed one after another. Each time is :meth:`~.base.Runner.timed_run`'s: measured
    where the model runs (inside a toolchain's worker process, for one that has its own).
    """
    labels = list(runners)
    for label in labels:
        for i in range(warmup):
            step(progress, f"warming up {label}", i, warmup)
            runners[label].run_for_timing(feeds[label])
    times: Dict[str, List[float]] = {label: [] for label in labels}
    total = runs * len(labels)
    if interleave:
        done = 0
        for i in range(runs):
            for label in labels if i % 2 == 0 else labels[::-1]:
                times[label].append(runners[label].timed_run(feeds[label]))
                done += 1
            step(progress, "timing (interleaved)", done, total)
    else:
        for k, label in enumerate(labels):
            for i in range(runs):
                times[label].append(runners[label].timed_run(feeds[label]))
                step(progress, f"timing {label}", k * runs + i + 1, total)
    return times
