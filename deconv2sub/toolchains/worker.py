"""Run a toolchain that lives in another Python interpreter (its own virtual environment).

Toolchains pin their own numpy/onnx/protobuf and are heavy, so they may be installed in a venv of
their own instead of the project's. A toolchain module then points an environment variable (e.g.
``DECONV2SUB_TVM_PYTHON=/tmp/tc-tvm/bin/python``) at that venv's interpreter and hands its work to
:class:`WorkerCompiled`, which starts one worker process there::

    <python> -m deconv2sub.toolchains.worker <toolchain-module>

with this checkout of deconv2sub first on ``PYTHONPATH`` (so both sides run the same code; the venv
needs deconv2sub's own dependencies, e.g. ``pip install -e <repo>``). The worker imports the
toolchain module, compiles the model in-process there, and answers one JSON line per request on
stdin:

* ``{"op": "probe"}`` -> ``{"ok": true, "reason": <unavailable_reason() or null>}``
* ``{"op": "compile", "model": path, "shapes": {name: shape}, "workdir": path}``
  -> ``{"ok": true, "input_names": [...], "output_names": [...], "artifacts": [...],
  "notes": [...]}`` (``notes``: the compiled model's ``notes`` where it has them, else ``[]``)
* ``{"op": "run", "feeds": path.npz, "out": path.npz}`` -> outputs saved to ``out``
* ``{"op": "time", "feeds": path.npz}`` -> ``{"ok": true, "seconds": s}``: one run timed in the
  worker (:meth:`~deconv2sub.toolchains.Compiled.timed_run`), no outputs saved
* any failure -> ``{"ok": false, "error": "<one line>"}``

Arrays travel as ``.npz`` files in the work directory. The worker's own stdout carries only the
protocol: file descriptor 1 is redirected to stderr before the toolchain is imported, so converter
chatter cannot corrupt it (stderr is captured and quoted when the worker dies).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Mapping, Optional

import numpy as np

from . import Compiled, ToolchainError

#: seconds a probe may take (importing a toolchain can be slow on a loaded machine)
PROBE_TIMEOUT_S = 120


def _package_root() -> str:
    """The directory that holds this checkout's ``deconv2sub`` package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_env() -> Dict[str, str]:
    """The environment for a worker: this checkout of deconv2sub first on ``PYTHONPATH``."""
    env = dict(os.environ)
    parts = [_package_root()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


class WorkerProcess:
    """One worker process in another interpreter, answering JSON requests for one toolchain."""

    def __init__(self, python: str, module: str):
        """Starts ``python -m deconv2sub.toolchains.worker module``."""
        self.python = python
        self.module = module
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(
                [python, "-m", "deconv2sub.toolchains.worker", module],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                env=worker_env(), text=True,
            )
        except OSError as err:
            raise ToolchainError(f"cannot start {python}: {err}") from None

    def request(self, **req) -> dict:
        """Send one request and return the worker's answer; a failure raises ToolchainError."""
        try:
            self._proc.stdin.write(json.dumps(req) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise ToolchainError(f"{self.module} worker in {self.python} died: "
                                 f"{self._last_stderr()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ToolchainError(answer.get("error", "unknown worker error"))
        return answer

    def _last_stderr(self) -> str:
        """The last non-empty line the worker wrote to stderr (its own key message, usually)."""
        self._proc.poll()
        self._stderr.seek(0)
        lines = [ln.strip() for ln in self._stderr.read().decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else f"exit code {self._proc.returncode}"

    def close(self) -> None:
        """Stop the worker (closing stdin ends its loop)."""
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()

    def __del__(self):
        """Closes the worker; errors at interpreter shutdown are dropped."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to report to
            pass


def unavailable_here_or_in(local_reason: Optional[str], python_env: str,
                           module: str) -> Optional[str]:
    """A toolchain module's ``unavailable_reason``, here or in another interpreter.

    Returns:
        ``None`` when it is usable in this interpreter (``local_reason`` is None) or in the one
        named by the environment variable ``python_env``, else why not (the other interpreter's
        answer when one is named).
    """
    if local_reason is None:
        return None
    python = os.environ.get(python_env)
    return probe(python, module) if python else local_reason


def compile_here_or_in(local_reason: Optional[str], python_env: str, module: str, compile_here,
                       model_path: str, input_shapes, workdir: str):
    """A toolchain module's ``compile``, here or in another interpreter.

    ``compile_here(model_path, input_shapes, workdir)`` when the toolchain is usable in this
    interpreter (``local_reason`` is None), else a :class:`WorkerCompiled` in the interpreter named
    by the environment variable ``python_env``; ToolchainError(``local_reason``) when none is named.
    """
    if local_reason is None:
        return compile_here(model_path, input_shapes, workdir)
    python = os.environ.get(python_env)
    if not python:
        raise ToolchainError(local_reason)
    return WorkerCompiled(python, module, model_path, input_shapes, workdir)


def probe(python: str, module: str) -> Optional[str]:
    """``None`` when ``module`` is usable in ``python``'s environment, else why not (one line)."""
    try:
        done = subprocess.run(
            [python, "-c",
             f"import json, {module} as m; print(json.dumps(m.unavailable_reason()))"],
            capture_output=True, text=True, env=worker_env(), timeout=PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot run {python}: {err}"
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        return f"{python} cannot import {module}: {lines[-1] if lines else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


class WorkerCompiled(Compiled):
    """A model compiled by a toolchain in another interpreter; runs go through the worker."""

    def __init__(self, python: str, module: str, model_path: str,
                 input_shapes: Mapping[str, List[int]], workdir: str):
        """Compiles ``model_path`` in a new worker of ``python``."""
        self.workdir = workdir
        self._worker = WorkerProcess(python, module)
        shapes = (None if input_shapes is None
                  else {k: [int(d) for d in v] for k, v in input_shapes.items()})
        answer = self._worker.request(op="compile", model=os.path.abspath(model_path),
                                      shapes=shapes, workdir=os.path.abspath(workdir))
        self.input_names = answer["input_names"]
        self.output_names = answer["output_names"]
        self.artifacts = answer["artifacts"]
        #: the toolchain's remarks on the build (e.g. RKNN's layers placed on the CPU)
        self.notes = answer.get("notes", [])
        self._calls = 0

    def _save_feeds(self, feeds: Mapping[str, np.ndarray]) -> str:
        """``feeds`` saved to a new ``.npz`` in ``workdir``; its path."""
        self._calls += 1
        path = os.path.join(self.workdir, f"feeds_{self._calls}.npz")
        np.savez(path, **{k: np.asarray(v) for k, v in feeds.items()})
        return path

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One run in the worker, arrays through ``.npz`` files in ``workdir``."""
        feeds_path = self._save_feeds(feeds)
        out_path = os.path.join(self.workdir, f"outputs_{self._calls}.npz")
        try:
            self._worker.request(op="run", feeds=feeds_path, out=out_path)
            with np.load(out_path) as data:
                return {name: data[name] for name in self.output_names}
        finally:
            for path in (feeds_path, out_path):
                if os.path.exists(path):
                    os.remove(path)

    def timed_run(self, feeds: Mapping[str, np.ndarray]) -> float:
        """Seconds of one run, timed in the worker: the feeds' file and the pipe are not counted."""
        feeds_path = self._save_feeds(feeds)
        try:
            return float(self._worker.request(op="time", feeds=feeds_path)["seconds"])
        finally:
            os.remove(feeds_path)

    def close(self) -> None:
        """Stop the worker process."""
        self._worker.close()


def _answer(out, **fields) -> None:
    out.write(json.dumps(fields) + "\n")
    out.flush()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _load_feeds(path: str) -> Dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def serve(module_name: str) -> int:
    """The worker's loop: answer requests on stdin until it closes (see the module docstring)."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # converter chatter on fd 1 goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    module = importlib.import_module(module_name)
    compiled = None
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            if req["op"] == "probe":
                _answer(out, ok=True, reason=module.unavailable_reason())
            elif req["op"] == "compile":
                compiled = module.compile_here(req["model"], req["shapes"], req["workdir"])
                _answer(out, ok=True, input_names=compiled.input_names,
                        output_names=compiled.output_names, artifacts=compiled.artifacts,
                        notes=list(getattr(compiled, "notes", [])))
            elif req["op"] == "run":
                np.savez(req["out"], **compiled.run(_load_feeds(req["feeds"])))
                _answer(out, ok=True)
            elif req["op"] == "time":
                _answer(out, ok=True, seconds=compiled.timed_run(_load_feeds(req["feeds"])))
            else:
                _answer(out, ok=False, error=f"unknown request {req['op']!r}")
        except Exception as err:  # noqa: BLE001 - every failure goes back as one line
            _answer(out, ok=False, error=_one_line(err))
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
