"""The import rule: flanneld/core does no I/O and never reaches outside its package.

`random` is banned outright: the core takes randomness as a `RandomSource` Protocol
(anything with `randrange(n)`, e.g. `random.Random`), so it needs no import for the type.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = sorted((ROOT / "flanneld" / "core").glob("*.py"))
FORBIDDEN = {"os", "socket", "subprocess", "fcntl", "ctypes", "pyroute2", "pyetcd", "etcd3",
             "time", "random", "pathlib", "cni", "asyncio", "threading", "select", "selectors",
             "flanneld"}


def imports(tree: ast.AST) -> set[str]:
    """Top-level names of absolute imports, plus ".." for relative ones leaving the package."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level > 1:
                found.add("..")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__"):
            found.add("__import__")
    return found


def test_the_scan_sees_every_import_form() -> None:
    tree = ast.parse("import os.path as p\nfrom time import monotonic\nfrom . import x\n"
                     "from ..io import tun\n__import__('socket')\n"
                     "try:\n    import pyroute2\nexcept ImportError:\n    pass\n"
                     "def f():\n    import random\n")
    assert imports(tree) == {"os", "time", "..", "__import__", "pyroute2", "random"}


def test_core_modules_exist() -> None:
    assert {p.stem for p in CORE} >= {"__init__", "errors", "config", "lease", "lease_policy",
                                      "lease_watch", "subnet_file"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_imports_nothing_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    assert imports(tree) & (FORBIDDEN | {"..", "__import__"}) == set()


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_has_a_docstring(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} needs a docstring"
