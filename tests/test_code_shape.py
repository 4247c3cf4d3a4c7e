"""The code's shape rules (issue 11): no function over 80 lines unless its docstring says why."""

from __future__ import annotations

import ast
import pathlib

from builders import REPO_ROOT

MAX_LINES = 80


def long_functions(root: pathlib.Path):
    """(file, function, lines) of each function over MAX_LINES without a ``long:`` line."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                why = any(line.strip().startswith("long:") for line in doc.splitlines())
                if lines > MAX_LINES and not why:
                    found.append((str(path.relative_to(root)), node.name, lines))
    return found


def test_no_function_over_80_lines_without_a_reason():
    """Package, tests and benchmarks: every long function says why in a ``long:`` line."""
    root = pathlib.Path(REPO_ROOT)
    found = [f for sub in ("deconv2sub", "tests", "benchmarks", "samples")
             for f in long_functions(root / sub)]
    assert found == []


def test_the_rule_catches_a_planted_long_function(tmp_path):
    """A planted 81-line function is found; the same with a ``long:`` line is not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES - 1))
    (tmp_path / "a.py").write_text(f"def f():\n{body}\n    return 0\n")
    (tmp_path / "b.py").write_text(f'def g():\n    """G.\n\n    long: a table.\n    """\n{body}\n')
    assert long_functions(tmp_path) == [("a.py", "f", MAX_LINES + 1)]
