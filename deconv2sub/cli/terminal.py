"""What reaches the terminal: the :class:`Printer` of results and the :func:`guarded` error line."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from ..errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, Deconv2SubError
from ..progress import Progress
from .groups import OutputFormatArgs

__all__ = ["Printer", "guarded"]


class Printer:
    """Prints results: on stderr when --json owns stdout; progress only on a TTY, not --quiet."""

    def __init__(self, fmt: OutputFormatArgs):
        """A printer for ``fmt``'s ``--json`` and ``--quiet``."""
        self.as_json, self.quiet = fmt.as_json, fmt.quiet
        self.stream = sys.stderr if fmt.as_json else sys.stdout
        self.progress = Progress.for_cli(fmt.quiet)

    def info(self, text: str) -> None:
        """A line of the report (not with --quiet)."""
        if not self.quiet:
            self.done_progress()
            click.echo(text, file=self.stream)

    def final(self, text: str) -> None:
        """A line printed even with --quiet (the verdict, warnings)."""
        self.done_progress()
        click.echo(text, file=self.stream)

    def done_progress(self) -> None:
        """Erase the progress line before printing anything else."""
        self.progress.clear()

    def json(self, data: Any) -> None:
        """The --json report, on stdout."""
        self.done_progress()
        click.echo(json.dumps(data, indent=2, default=str))


def guarded(fn: Callable) -> Callable:
    """Turn library errors into one line on stderr and the documented exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Deconv2SubError as err:
            if not err.reported:  # a command may have printed its own verdict already
                click.echo(f"deconv2sub: error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("deconv2sub: interrupted; nothing written", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except MemoryError:
            click.echo("deconv2sub: error: out of memory", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except OSError as err:
            where = err.filename or ""
            click.echo(f"deconv2sub: error: {err.strerror or err} ({where})", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper
