"""The CLI starts without the heavy modules (issue 12, point 12).

`deconv2sub --help`, a command's --help and an error found before any model is read (a missing
file, a bad option) must not pay about a second for onnx, onnxruntime, onnx-graphsurgeon, torch or
openvino. Checked on sys.modules in a fresh interpreter, not by timing, so that a loaded machine
cannot make it flaky.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("onnx", "onnxruntime", "onnx_graphsurgeon", "torch", "openvino", "numpy")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, sys
from click.testing import CliRunner
import deconv2sub.cli
heavy = {HEAVY!r}
loaded = {{"import": [m for m in heavy if m in sys.modules]}}
for args in {RUNS!r}:
    r = CliRunner().invoke(deconv2sub.cli.main, args)
    loaded[" ".join(args)] = [r.exit_code] + [m for m in heavy if m in sys.modules]
print(json.dumps(loaded))
"""

RUNS = [
    ["--help"],
    ["convert", "--help"],
    ["validate", "--help"],
    ["inspect", "--help"],
    ["bench", "--help"],
    ["convert", "no_such_model.onnx"],
    ["validate", "no_such.onnx", "b.onnx"],
    ["inspect", "no_such_model.onnx"],
    ["bench", "no_such_model.onnx"],
]


def test_cli_does_not_import_heavy_modules(tmp_path):
    """--help and early errors of every command import none of HEAVY."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(HEAVY=HEAVY, RUNS=RUNS)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert loaded.pop("import") == []
    for run, (code, *modules) in loaded.items():
        assert modules == [], (run, modules)
        assert code == (0 if run.endswith("--help") else 2), run


def test_package_names_still_resolve():
    """The package's lazy names still resolve."""
    import deconv2sub

    assert callable(deconv2sub.convert_model) and callable(deconv2sub.convert_graph)
    assert set(deconv2sub.__all__) <= set(dir(deconv2sub))
