"""Helpers shared by the toolchain runners: native chatter off stdout, converters in children.

They keep native libraries' chatter off stdout, run a converter in a child process and turn its
failure into a one-line :class:`ToolchainError`.

Native toolchain libraries (ncnn, MNN) print from C++ straight to file descriptors 1 and 2, which
``contextlib.redirect_stdout`` cannot catch; :func:`captured_fds` redirects the descriptors
themselves. Converters run as child processes so that a converter crash (an abort or a segfault
in its C++) becomes an error message, not the end of the caller.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import onnx

from . import ToolchainError

#: the seconds a converter may run before it is stopped
CONVERT_TIMEOUT_S = 600

#: words that mark the converter's own key message in its output
_ERROR_WORDS = ("error", "not support", "not exist", "unsupported", "failed", "fatal",
                "abort", "segmentation", "exception", "invalid", "cannot", "can't")


class Captured:
    """The text written to fds 1 and 2 inside a :func:`captured_fds` block (after it exits)."""

    text: str = ""


@contextlib.contextmanager
def captured_fds() -> Iterator[Captured]:
    """Redirect file descriptors 1 and 2 to a temporary file for the block; keep the text."""
    captured = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")


def key_message(text: str, fallback: str) -> str:
    """The converter's own key line: the last line with an error word, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if any(word in line.lower() for word in _ERROR_WORDS):
            return line[:300]
    return lines[-1][:300] if lines else fallback


def run_converter(argv: Sequence[str], what: str, cwd: Optional[str] = None) -> str:
    """Run ``argv`` with its output captured; return the output, raise on a non-zero exit."""
    try:
        proc = subprocess.run(list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=CONVERT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{what} ran past {CONVERT_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise ToolchainError(f"{what} could not start: {exc}") from exc
    text = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        reason = key_message(text, f"exit status {proc.returncode}")
        raise ToolchainError(f"{what} failed (exit status {proc.returncode}): {reason}")
    return text


def python_argv(code: str, args: List[str]) -> List[str]:
    """A command line running ``code`` in this interpreter with ``args`` as ``sys.argv[1:]``."""
    return [sys.executable, "-c", code, *args]


def graph_io(model_path: str) -> Tuple[List[str], List[str], Dict[str, int]]:
    """ONNX input names (initializers excluded), output names, and each output's rank if known.

    Raises:
        ToolchainError: the file is not an ONNX model.
    """
    try:
        model = onnx.load(model_path, load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, OSError, ...
        raise ToolchainError(f"cannot read ONNX model {model_path}: {exc}") from exc
    inits = {init.name for init in model.graph.initializer}
    inputs = [vi.name for vi in model.graph.input if vi.name not in inits]
    outputs = [vi.name for vi in model.graph.output]
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in model.graph.output
             if vi.type.tensor_type.HasField("shape")}
    if not inputs or not outputs:
        raise ToolchainError(f"{model_path} has no graph inputs or no outputs")
    return inputs, outputs, ranks
