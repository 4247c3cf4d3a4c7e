"""A tiny progress line for long steps (loading, many nodes, several trials, benchmark rounds).

Library code reports progress through a plain callable,
``progress(text, done=None, total=None)``; it never prints. The CLI passes a :class:`Progress`,
which draws one self-erasing line on stderr — only when stderr is a terminal and ``--quiet`` was not
given, so pipes, logs and ``--json`` consumers never see control characters. ``done``/``total`` turn
the line into a bar.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["ProgressFn", "Progress", "step"]

#: The callable library functions accept: ``progress("running the original", 2, 5)``.
ProgressFn = Callable[..., None]


def step(
    progress: Optional[ProgressFn],
    text: str,
    done: Optional[int] = None,
    total: Optional[int] = None,
) -> None:
    """Report to ``progress`` if there is one (keeps call sites short)."""
    if progress is None:
        return
    if done is None and total is None:
        progress(text)
        return
    progress(text, done, total)


class Progress:
    """Draws ``... text [#####-----] 3/10`` on one line of ``stream`` (default stderr).

    Disabled unless ``enabled`` is true; pass ``Progress.for_cli(quiet)`` to get "on a TTY and not
    quiet". Redraws are throttled (every ``interval`` seconds, or when the text changes, or at the
    last step). Call :meth:`clear` before printing anything else; it is a no-op when nothing was
    drawn.
    """

    BAR = 20

    def __init__(
        self, enabled: bool = False, stream: Optional[TextIO] = None, interval: float = 0.1
    ):
        """A progress line on ``stream`` (stderr when None), drawn only when ``enabled``."""
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled)
        self.interval = interval
        self._last_text: Optional[str] = None
        self._last_time = 0.0
        self._drawn = False

    @classmethod
    def for_cli(cls, quiet: bool = False, stream: Optional[TextIO] = None) -> "Progress":
        """Enabled when ``stream`` (default stderr) is a terminal and not ``quiet``."""
        stream = stream if stream is not None else sys.stderr
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return cls(enabled=tty and not quiet, stream=stream)

    def __call__(self, text: str, done: Optional[int] = None, total: Optional[int] = None) -> None:
        """Draw ``text``, with a bar when ``total`` is given (throttled, see the class)."""
        if not self.enabled:
            return
        now = time.monotonic()
        final = total is not None and done is not None and done >= total
        if text == self._last_text and not final and now - self._last_time < self.interval:
            return
        self._last_text, self._last_time = text, now
        line = f"... {text}"
        if total:
            done = max(0, min(int(done or 0), int(total)))
            filled = self.BAR * done // int(total)
            line += f" [{'#' * filled}{'-' * (self.BAR - filled)}] {done}/{total}"
        width = shutil.get_terminal_size((80, 24)).columns - 1
        if len(line) > width:
            line = line[: max(0, width - 1)] + "…"
        self.stream.write("\r\033[K" + line)
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the progress line (if one was drawn)."""
        if self.enabled and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False
            self._last_text = None
