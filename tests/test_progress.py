"""deconv2sub.progress: drawn only on a terminal and not --quiet; never pollutes pipes."""

from __future__ import annotations

import io

import pytest

from deconv2sub.progress import Progress, step


class FakeTTY(io.StringIO):
    """A string stream that says it is a terminal."""

    def isatty(self):
        """Always a terminal."""
        return True


def test_draws_bar_on_tty_and_clears():
    """On a terminal: a bar is drawn and erased by clear()."""
    s = FakeTTY()
    p = Progress.for_cli(quiet=False, stream=s)
    assert p.enabled
    p("running the original model", 2, 4)
    out = s.getvalue()
    assert out.startswith("\r\033[K... running the original model [")
    assert "##########----------] 2/4" in out
    p.clear()
    assert s.getvalue().endswith("\r\033[K")


def test_throttles_repeated_text_but_not_the_last_step():
    """Redraws of the same text are throttled, the last step never."""
    s = FakeTTY()
    p = Progress(enabled=True, stream=s, interval=60)
    p("timing", 1, 10)
    p("timing", 2, 10)
    assert "2/10" not in s.getvalue()
    p("timing", 10, 10)
    assert "10/10" in s.getvalue()


def test_silent_when_piped_or_quiet():
    """Nothing is written to a pipe, nor with quiet."""
    piped = io.StringIO()
    p = Progress.for_cli(quiet=False, stream=piped)
    p("loading", 1, 2)
    p.clear()
    assert not p.enabled and piped.getvalue() == ""
    tty = FakeTTY()
    q = Progress.for_cli(quiet=True, stream=tty)
    q("loading")
    q.clear()
    assert tty.getvalue() == ""


def test_step_passes_counts_and_never_swallows_a_callbacks_error():
    """Step passes counts only when given and lets a callback's error through."""
    seen = []
    step(lambda *a: seen.append(a), "plain")
    step(lambda *a: seen.append(a), "with counts", 1, 2)
    step(None, "nobody listens", 1, 2)
    assert seen == [("plain",), ("with counts", 1, 2)]

    def broken(text, done=None, total=None):
        raise TypeError("a bug inside the callback")

    with pytest.raises(TypeError, match="inside the callback"):
        step(broken, "x", 1, 2)  # the old one-argument shim retried and hid this
