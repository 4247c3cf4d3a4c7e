"""Error types with the exit codes the CLI maps them to.

Exit codes (documented in the README):

* 0 — success (verification passed, or was skipped on request)
* 1 — verification mismatch: the rewritten model does not match the original
* 2 — bad input: missing/unreadable/invalid model, bad option value, output not writable, ...
* 3 — environment: a requested runtime or execution provider is unavailable (e.g. ``--require-cuda``)
"""

from __future__ import annotations

EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3


class Deconv2SubError(Exception):
    """Base class; ``str(err)`` is a single, user-facing line."""

    exit_code = EXIT_BAD_INPUT
    reported = False

    def __init__(self, *args, stage=None, result=None):
        """``stage``: the step that failed (e.g. ``"load"``); ``result``: what was produced."""
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
    """The runtime has no kernel for an operator/dtype of the model (e.g. ORT CPU ConvTranspose(float64))."""
