"""The package's import structure.

The package's import structure: every module imports alone, no import cycle, no private name
imported from another module.

The graph is read statically (ast) from every ``import`` of the package's modules, those inside
functions included (a lazy import hides a cycle, it does not remove it).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from typing import Dict, List, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Private names still imported across modules, each (importer, imported module): left for the
# restructuring of the modules they live in (issue 11, the session after the core's).
PRIVATE_IMPORTS_LEFT: Set[Tuple[str, str]] = set()


def package_modules(root: str, package: str = "deconv2sub") -> Dict[str, str]:
    """``{module name: path}`` of every module of ``package`` under ``root``."""
    mods = {}
    for folder, _, files in os.walk(os.path.join(root, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                mod = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                mods[mod[: -len(".__init__")] if mod.endswith(".__init__") else mod] = path
    return mods


def _imports(mod: str, path: str, mods: Dict[str, str]) -> List[Tuple[str, List[str]]]:
    """(imported module, names taken from it) for every import of the package in ``mod``."""
    package = mod if path.endswith("__init__.py") else mod.rsplit(".", 1)[0]
    top = next(iter(mods)).split(".")[0]
    found = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = base + ("." + node.module if node.module else "")
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, []) if sub in mods else (target, [alias.name]))
    return found


def import_graph(root: str, package: str = "deconv2sub") -> Dict[str, Set[str]]:
    """``{module: modules it imports}`` within ``package``."""
    mods = package_modules(root, package)
    return {
        mod: {t for t, _ in _imports(mod, path, mods) if t in mods and t != mod}
        for mod, path in mods.items()
    }


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or [] when there is none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(mod: str) -> List[str]:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        path.pop()
        state[mod] = 2
        return []

    for mod in sorted(graph):
        if mod not in state:
            cycle = visit(mod)
            if cycle:
                return cycle
    return []


def test_no_import_cycle():
    """The static import graph of the package has no cycle."""
    assert find_cycle(import_graph(ROOT)) == []


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    """The check above can fail: a package whose a -> b -> a (b's import inside a function)."""
    pkg = tmp_path / "deconv2sub"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    (pkg / "c.py").write_text("from . import a\n")
    cycle = find_cycle(import_graph(str(tmp_path)))
    assert cycle in (
        ["deconv2sub.a", "deconv2sub.sub.b", "deconv2sub.a"],
        ["deconv2sub.sub.b", "deconv2sub.a", "deconv2sub.sub.b"],
    )


def private_imports(root: str, package: str = "deconv2sub") -> Set[Tuple[str, str]]:
    """(importer, imported module) for every private name a module takes from another one."""
    mods = package_modules(root, package)
    found = set()
    for mod, path in mods.items():
        for target, names in _imports(mod, path, mods):
            if any(n.startswith("_") for n in names) and target != mod:
                found.add((mod, target))
    return found


def test_no_private_name_imported_from_another_module():
    """No module takes a private name from another one."""
    assert private_imports(ROOT) - PRIVATE_IMPORTS_LEFT == set()


def test_the_private_import_finder_finds_planted_ones(tmp_path):
    """The check above can fail: private names taken at module level, in a function, aliased."""
    pkg = tmp_path / "deconv2sub"
    (pkg / "io").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "io" / "__init__.py").write_text("")
    (pkg / "io" / "tensors.py").write_text("def _walk():\n    pass\n\n\ndef walk():\n    pass\n")
    (pkg / "a.py").write_text("from .io.tensors import walk\n")  # public: fine
    (pkg / "b.py").write_text("def f():\n    from .io.tensors import _walk as w\n")
    (pkg / "c.py").write_text("from deconv2sub.io.tensors import walk, _walk\n")
    assert private_imports(str(tmp_path)) == {
        ("deconv2sub.b", "deconv2sub.io.tensors"),
        ("deconv2sub.c", "deconv2sub.io.tensors"),
    }


@pytest.mark.slow  # ~1 s per module: each import re-runs the package's own imports
def test_every_module_imports_alone():
    """Every module imports on its own.

    Each module imported first, in a process where no other module of the package was imported
    before it (the package's modules are dropped from sys.modules between two imports).
    """
    names = sorted(package_modules(ROOT))
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    loaded = [m for m in sys.modules if m.split('.')[0] == 'deconv2sub']\n"
        "    for m in loaded:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as err:\n"
        "        failed.append(f'{name}: {err}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_plan_imports_only_numpy_and_itself():
    """plan/ imports no graph library.

    plan/ is pure arithmetic: its modules import numpy, the standard library and each other,
    never onnx, onnx_graphsurgeon or the rest of the package.
    """
    allowed_top = {"numpy", "__future__", "math", "itertools", "dataclasses", "typing", "functools"}
    found = set()
    for mod, path in package_modules(ROOT).items():
        if not mod.startswith("deconv2sub.plan"):
            continue
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {
                    (mod, a.name) for a in node.names if a.name.split(".")[0] not in allowed_top
                }
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                if node.module.split(".")[0] not in allowed_top:
                    found.add((mod, node.module))
            elif isinstance(node, ast.ImportFrom) and node.level > 1:
                found.add((mod, "." * node.level + (node.module or "")))  # outside plan/
    assert found == set()
