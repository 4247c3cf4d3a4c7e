"""Deployment toolchains (:mod:`deconv2sub.toolchains`) as runners: :class:`ToolchainRunner`."""

from __future__ import annotations

import importlib
import os
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import InputError, NoKernelError, RuntimeUnavailableError
from ..toolchains import ToolchainError
from .base import ModelSource, Runner, RunnerOptions, RuntimeInfo, source_specs

__all__ = ["ToolchainRunner", "toolchain_factory"]


class ToolchainRunner(Runner):
    """A model taken through a deployment toolchain (:mod:`deconv2sub.toolchains`).

    Converted by the toolchain's own converter for the static input shapes of each run (once per
    distinct shape set), then run in the toolchain's runtime. Outputs keyed by ONNX output name, in
    ONNX layout.
    """

    def __init__(self, module, source: ModelSource, info: RuntimeInfo, what: str):
        """``module``: the toolchain's module (``compile``, optionally ``MAX_BATCH``)."""
        outputs = [o.name for o in source.metadata().graph.output]
        self._tmp = tempfile.TemporaryDirectory(prefix=f"deconv2sub-{module.NAME}-")
        super().__init__(info, source_specs(source, info.runtime, what), outputs, what,
                         source.keepalive)
        self._module = module
        if source.path is not None:
            self._path = source.path
        else:
            self._path = os.path.join(self._tmp.name, "model.onnx")
            with open(self._path, "wb") as f:
                f.write(source.data)
        self._compiled: Dict[tuple, object] = {}

    def build_notes(self) -> List[str]:
        """The toolchain's remarks on every build so far (e.g. RKNN's layers placed on the CPU)."""
        return [n for c in self._compiled.values() for n in getattr(c, "notes", [])]

    def _compile(self, shapes: Dict[str, Tuple[int, ...]]):
        key = tuple(sorted(shapes.items()))
        if key not in self._compiled:
            workdir = tempfile.mkdtemp(prefix="shape-", dir=self._tmp.name)
            try:
                self._compiled[key] = self._module.compile(self._path, dict(shapes), workdir)
            except ToolchainError as e:
                # the toolchain cannot take this model: "cannot run here", like a missing kernel
                raise NoKernelError(
                    f"{self.info.runtime} cannot convert {self.what}: {e}") from None
        return self._compiled[key]

    def run(self, feeds, output_names=None):
        """Run once (one sample at a time on a toolchain without a batch axis, outputs stacked)."""
        names = self._wanted(output_names)
        parts = self._samples(feeds)
        if parts is None:
            return self._run_once(feeds, names)
        outs = [self._run_once(part, names) for part in parts]
        return {name: np.concatenate([o[name] for o in outs], axis=0) for name in names}

    def timed_run(self, feeds) -> float:
        """Seconds of one run, timed where the toolchain runs it (``Compiled.timed_run``).

        Compiled for the feeds' shapes as :meth:`run` does; one sample at a time on a toolchain
        without a batch axis: the sum of the samples' times.
        """
        total = 0.0
        for part in self._samples(feeds) or [feeds]:
            compiled = self._compiled_for(part)
            try:
                total += compiled.timed_run(part)
            except ToolchainError as e:
                raise self._run_error(e) from None
        return total

    def _samples(self, feeds) -> Optional[List[dict]]:
        """``feeds`` one sample at a time where the toolchain has no batch axis, else None."""
        batches = {int(np.shape(v)[0]) for v in feeds.values() if np.ndim(v) > 0}
        max_batch = getattr(self._module, "MAX_BATCH", None)
        if max_batch == 1 and len(batches) == 1 and batches != {1}:
            (n,) = batches
            return [{k: v[i:i + 1] for k, v in feeds.items()} for i in range(n)]
        return None

    def _run_error(self, e: ToolchainError) -> InputError:
        return InputError(f"{self.info.runtime} failed to run {self.what}: {e}")

    def _compiled_for(self, feeds):
        """The model compiled for the shapes of ``feeds`` (once per shape set)."""
        return self._compile({k: tuple(np.shape(v)) for k, v in feeds.items()})

    def _run_once(self, feeds, names):
        compiled = self._compiled_for(feeds)
        try:
            out = compiled.run(feeds)
        except ToolchainError as e:
            raise self._run_error(e) from None
        missing = [n for n in names if n not in out]
        if missing:
            raise InputError(f"{self.info.runtime} gave no output '{missing[0]}' for {self.what}")
        return {n: out[n] for n in names}


def toolchain_factory(name: str):
    """The runner factory of toolchain ``name`` (module ``deconv2sub.toolchains.<name>``)."""

    def create(source: ModelSource, what: str, options: RunnerOptions) -> ToolchainRunner:
        if options.provider == "cuda" or options.require_cuda:
            raise RuntimeUnavailableError(f"{name} runs on the CPU here; use provider cpu")
        try:
            module = importlib.import_module(f"deconv2sub.toolchains.{name}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("deconv2sub"):
                raise RuntimeUnavailableError(f"no {name} runner in this deconv2sub") from None
            raise RuntimeUnavailableError(f"{name} is not installed ({e.name} missing)") from None
        reason = module.unavailable_reason()
        if reason:
            raise RuntimeUnavailableError(reason)
        version = getattr(module, "version", lambda: "")()
        info = RuntimeInfo(name, "CPU", ["CPU"], None, version)
        return ToolchainRunner(module, source, info, what)

    return create
