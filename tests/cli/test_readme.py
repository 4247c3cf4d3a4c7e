"""The README's quick start (issue 12, point 13).

Exactly two commands, and the first one, run on a fresh clone (no out/ folder), converts a bundled
sample into a path git ignores, so that trying the tool leaves no untracked file in the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def quick_start_commands():
    """The bash blocks of the README's Quick start section."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)]


def test_quick_start_is_two_commands():
    """The quick start is two one-line commands: convert a sample, run the tests."""
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "deconv2sub convert samples/" in commands[0] and "pytest" in commands[1]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_quick_start_convert_works_on_a_fresh_clone_and_writes_an_ignored_file(tmp_path):
    """Run the first command's steps after the set-up (pip) in a copy of samples/ without out/."""
    steps = [s.strip() for s in quick_start_commands()[0].split("&&")]
    steps = [s for s in steps if not s.startswith(("python3 -m venv", ".venv/bin/pip"))]
    shutil.copytree(os.path.join(ROOT, "samples"), tmp_path / "samples")
    shutil.copy(os.path.join(ROOT, ".gitignore"), tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    output = None
    for step in steps:
        argv = shlex.split(step)
        if argv[0].endswith("deconv2sub"):
            argv = [sys.executable, "-m", "deconv2sub.cli"] + argv[1:]
            output = argv[argv.index("-o") + 1] if "-o" in argv else None
        subprocess.run(argv, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    if output is None:  # the default output, beside the model
        from deconv2sub.pipeline import default_output_path

        model = next(a for a in shlex.split(steps[-1]) if a.startswith("samples/"))
        output = default_output_path(model)
    assert (tmp_path / output).is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", output], cwd=tmp_path, check=False)
    assert ignored.returncode == 0, f"{output} is not ignored by .gitignore"


def layout_section() -> str:
    """The README's Layout section."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read().split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_layout_names_every_package_folder_and_module():
    """Every folder of the package and every module in it is named in the README's Layout."""
    section = layout_section()
    package = os.path.join(ROOT, "deconv2sub")
    missing = []
    for folder, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if not d.startswith("__")]
        rel = os.path.relpath(folder, ROOT).replace(os.sep, "/")
        if folder != package and f"`{rel}/`" not in section:
            missing.append(rel + "/")
        for name in files:
            stem = name[:-3]
            if not name.endswith(".py") or stem.startswith("__"):
                continue
            spelled = (f"`{name}`", f"`{stem}`", f"`{rel}/{name}`")
            if not any(s in section for s in spelled):
                missing.append(f"{rel}/{name}")
    assert not missing, f"not in the README's Layout section: {missing}"
