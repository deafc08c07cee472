"""The import rule: cni/core does no I/O, and the exec'd plugin loads only what it needs."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted((ROOT / "cni" / "core").glob("*.py"))
FORBIDDEN = {"os", "socket", "subprocess", "fcntl", "ctypes", "pyroute2", "time", "random",
             "pathlib", "flanneld"}


def imported_modules(tree: ast.AST, module_level_only: bool = False) -> set[str]:
    """Top-level names of absolute imports (relative ones stay inside the package)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        if module_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return found


def parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def test_the_scan_sees_every_import_form() -> None:
    tree = ast.parse("import os.path as p\nfrom time import monotonic\nfrom . import x\n"
                     "try:\n    import pyroute2\nexcept ImportError:\n    pass\n"
                     "def f():\n    import socket\n")
    assert imported_modules(tree) == {"os", "time", "pyroute2", "socket"}
    assert imported_modules(tree, module_level_only=True) == {"os", "time", "pyroute2"}


def test_core_modules_exist() -> None:
    assert {p.stem for p in CORE} >= {"errors", "version", "skel", "netconf", "subnet_env",
                                      "result", "ipam", "plan", "attachment"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_imports_nothing_that_does_io(path: Path) -> None:
    assert imported_modules(parse(path)) & FORBIDDEN == set()


@pytest.mark.parametrize("path", [ROOT / "cni" / "__main__.py", *CORE], ids=lambda p: p.name)
def test_no_pyroute2_at_module_level(path: Path) -> None:
    assert "pyroute2" not in imported_modules(parse(path), module_level_only=True)


def test_version_command_does_not_load_pyroute2() -> None:
    probe = ("import sys, json\nimport cni.__main__ as m\nrc = m.main()\n"
             "print(json.dumps([rc, sorted(n for n in sys.modules if n.split('.')[0] in "
             "('pyroute2', 'flanneld') or n.startswith(('cni.io', 'cni.commands.')))]), "
             "file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = "VERSION"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(out.stderr) == [0, []]
    assert json.loads(out.stdout) == {"cniVersion": "1.1.0", "supportedVersions": [
        "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
