"""The ``deconv2sub`` command line: parses options, calls the library, prints. No logic of its own.

One module per command (:mod:`.convert`, :mod:`.validate`, :mod:`.inspect`, :mod:`.bench`), the
argument groups they share in :mod:`.groups`, the printer and the error line in :mod:`.terminal`.
Exit codes: see :mod:`deconv2sub.errors`.
"""

from __future__ import annotations

import click

from . import bench, convert, inspect, validate

__all__ = ["main"]

HELP = """\
Rewrite ONNX ConvTranspose into exact sub-pixel convolutions (Conv + DepthToSpace), verify, save.

\b
convert   rewrite, verify, save          validate  compare any two models
inspect   what convert would do, costs   bench     latency before/after

\b
Exit codes: 0 ok, 1 verification mismatch, 2 bad input,
3 runtime/provider unavailable.
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help=HELP)
@click.version_option(package_name="deconv2sub")
def main() -> None:
    """The ``deconv2sub`` command group; its ``--help`` is :data:`HELP`."""


for _command in (convert.convert, validate.validate, inspect.inspect_cmd, bench.bench):
    main.add_command(_command)
