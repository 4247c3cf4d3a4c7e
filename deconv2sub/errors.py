"""Error types with the exit codes the CLI maps them to.

Exit codes (the README's "Exit codes" table says the same):

* 0 — success (verification passed, or was skipped on request, or is not available on the runtime,
  which is reported)
* 1 — verification mismatch: the rewritten model does not match the original; nothing written
* 2 — bad input: missing/unreadable/invalid model, bad option value, output not writable, ...
* 3 — environment: a requested runtime or execution provider is unavailable
  (e.g. ``--require-cuda`` without CUDA)
* 130 — interrupted (Ctrl-C); nothing written
"""

from __future__ import annotations

from typing import Any, Optional

EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


class Deconv2SubError(Exception):
    """Base class; ``str(err)`` is a single, user-facing line.

    Attributes:
        stage: where it happened, when the raiser says (e.g. ``"load"``: a runtime could not load
            a model, as opposed to failing to run it), else None.
        result: what was computed before the failure (e.g. ``convert``'s ``ConvertResult`` on a
            verification mismatch, so that callers can report it), else None.
        reported: the CLI has printed the error's line already (so it prints no second one).
    """

    exit_code = EXIT_BAD_INPUT
    reported = False

    def __init__(self, *args: object, stage: Optional[str] = None, result: Any = None):
        """The message (``*args``, as for any exception) and the optional fields."""
        super().__init__(*args)
        self.stage = stage
        self.result = result


class InputError(Deconv2SubError):
    """The user gave us something we cannot use (file, model, option value)."""

    exit_code = EXIT_BAD_INPUT


class OutputError(Deconv2SubError):
    """The output cannot be written (exists without --force, unwritable folder, ...)."""

    exit_code = EXIT_BAD_INPUT


class RuntimeUnavailableError(Deconv2SubError):
    """A requested runtime or execution provider is not usable on this machine."""

    exit_code = EXIT_ENVIRONMENT


class VerificationError(Deconv2SubError):
    """The rewritten model's outputs differ from the original's beyond tolerance."""

    exit_code = EXIT_MISMATCH


class NoKernelError(InputError):
    """The runtime has no kernel for an operator/dtype of the model.

    For example ONNX Runtime's CPU provider has no float64 ConvTranspose.
    """
