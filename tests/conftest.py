"""Fixtures shared by the test folders."""

from __future__ import annotations

import pytest
from click.testing import CliRunner


@pytest.fixture(scope="session")
def invoke():
    """Run the ``deconv2sub`` command line in-process: ``invoke("convert", path, "-o", out)``.

    Arguments may be paths or numbers (passed as strings); exceptions that escape the CLI's own
    error handling propagate (a traceback is a bug). Returns click's ``Result`` (``exit_code``,
    ``output``, ``stdout``, ``stderr``).
    """
    from deconv2sub.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run
