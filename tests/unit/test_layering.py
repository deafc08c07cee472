"""The import rules between the packages, checked on the source of every module.

- A core package (`cni.core`, `flanneld.core`) does no I/O: it imports only its own
  modules and an allowlist of pure standard-library modules, by import statements (no
  `__import__` or `importlib` calls). Relative imports are resolved to absolute names
  first, so `from ..io import link` or `from .. import io` in a core module counts as
  importing `cni.io`. `flanneld.core` may also import the pure primitives of
  `cryptography` it names (AEADs, X25519, HKDF), never its key generation or the system's
  randomness (`secrets` stays banned).
- `cni` and `flanneld` never import each other (the exec'd plugin starts fast; the two
  programs share formats, not code).
- Shipped code (`cni`, `flanneld`) never imports the lab, the benchmarks, the build or the
  tests.
- Every core module has a docstring (its role and its I/O rule).
- The plugin's entry point and its core import no pyroute2 at module level (the plugin
  talks rtnetlink itself: `cni.core.rtnl`, `cni.io.netlink`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("cni", "flanneld")
CORES = ("cni.core", "flanneld.core")
NOT_SHIPPED = ("lab", "bench", "tests", "build")

# Modules that do I/O, or reach the clock or chance (the core takes `now` and a
# `random.Random`-like argument instead). None may appear in a core package.
IO_MODULES = frozenset({
    "os", "io", "socket", "_socket", "subprocess", "fcntl", "ctypes", "mmap", "signal", "select",
    "selectors", "asyncio", "threading", "multiprocessing", "concurrent", "time", "datetime",
    "random", "secrets", "uuid", "pathlib", "shutil", "tempfile", "glob", "stat", "sys",
    "importlib", "pyroute2", "pyetcd", "etcd3", "grpc", "urllib", "http", "ssl",
})
# What a core module may import from the standard library: computation only. `logging`
# only hands records to the handlers the shell installs (aioquic's connection logs too).
PURE_STDLIB = frozenset({
    "__future__", "abc", "base64", "binascii", "bisect", "collections", "contextlib", "copy",
    "dataclasses", "enum", "functools", "hashlib", "heapq", "ipaddress", "itertools", "json",
    "logging", "math", "operator", "re", "string", "struct", "textwrap", "types", "typing",
    "zlib",
})
# Third-party modules a core package may import, per core: computation only. The daemon's
# core seals datagrams and derives keys with these `cryptography` primitives; keys come in
# as bytes (nothing in a core generates one: that needs the system's randomness).
PURE_THIRD_PARTY = {
    "flanneld.core": frozenset({
        "cryptography.exceptions",
        "cryptography.hazmat.primitives.asymmetric.x25519",
        "cryptography.hazmat.primitives.ciphers.aead",
        "cryptography.hazmat.primitives.hashes",
        "cryptography.hazmat.primitives.kdf.hkdf",
    }),
}


@dataclass(frozen=True)
class Import:
    name: str            # the absolute name of what is imported ("" when it cannot be told)
    line: int
    module_level: bool   # runs when the module is imported (not only inside a function)
    form: str            # the source form, for messages and for the scanner's own test

    def within(self, package: str) -> bool:
        return self.name == package or self.name.startswith(package + ".")

    @property
    def top(self) -> str:
        return self.name.split(".")[0]


def resolve(package: str, level: int, module: str | None) -> str:
    """The absolute name of `from <level dots><module> import ...` in `package`; "" when
    the dots climb above the top-level package."""
    parts = package.split(".") if package else []
    if level - 1 >= len(parts) or not parts:
        return ""
    base = parts[:len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _text(node: ast.expr | None) -> str:
    """A module name given as an expression: a constant string as it is, an f-string as
    far as its constant beginning goes (f"cni.commands.{m}" -> "cni.commands"), else ""."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0],
                                                                      ast.Constant):
        return str(node.values[0].value).rstrip(".")
    return ""


def _call_target(call: ast.Call, package: str) -> str | None:
    """What a call of `__import__` or `importlib.import_module` imports ("" when that is
    not known until it runs); None for any other call."""
    func, args = call.func, call.args
    keywords = {k.arg: k.value for k in call.keywords}
    if isinstance(func, ast.Name) and func.id == "__import__":
        name = _text(args[0] if args else keywords.get("name"))
        level_node = args[4] if len(args) > 4 else keywords.get("level")
        level = level_node.value if isinstance(level_node, ast.Constant) else 0
        anchor = package
    elif isinstance(func, ast.Attribute) and func.attr == "import_module":
        name = _text(args[0] if args else keywords.get("name"))
        level = len(name) - len(name.lstrip("."))
        name = name.lstrip(".")
        anchor_node = args[1] if len(args) > 1 else keywords.get("package")
        is_own = isinstance(anchor_node, ast.Name) and anchor_node.id == "__package__"
        anchor = package if is_own else _text(anchor_node)
    else:
        return None
    if not name or not isinstance(level, int):
        return ""
    return resolve(anchor, level, name) if level else name


def scan(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import in `source`, the source of module `module`: import statements,
    from-imports (absolute and relative, each imported name as `base.name`, since it may be
    a submodule), and calls of `__import__` and `importlib.import_module` (a name that is
    not a constant string is recorded as "")."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(alias.name, node.lineno, module_level, "import"))
        elif isinstance(node, ast.ImportFrom):
            base = resolve(package, node.level, node.module) if node.level else node.module or ""
            form = "relative" if node.level else "from"
            for alias in node.names:
                name = base if alias.name == "*" or not base else f"{base}.{alias.name}"
                found.append(Import(name, node.lineno, module_level, form))
        elif isinstance(node, ast.Call):
            target = _call_target(node, package)
            if target is not None:
                found.append(Import(target, node.lineno, module_level, "call"))
        inner = module_level and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef
                                                | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), True)
    return found


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def source(self) -> str:
        return self.path.read_text()

    def imports(self) -> list[Import]:
        return scan(self.source, self.name, self.path.name == "__init__.py")


def modules(package: str) -> list[Module]:
    root = ROOT.joinpath(*package.split("."))
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append(Module(name, path))
    return out


def where(module: Module, imp: Import) -> str:
    return f"{module.path.relative_to(ROOT)}:{imp.line} imports {imp.name or '(unknown)'}"


SHIPPED_MODULES = [m for p in SHIPPED for m in modules(p)]
CORE_MODULES = [m for p in CORES for m in modules(p)]


def ids(m: Module) -> str:
    return m.name


# --- the scanner sees every form --------------------------------------------------------

FORMS = """\
import os.path as p, json
from time import monotonic
from . import sibling
from .errors import CNIError
from .. import io
from ..io import link
from ...elsewhere import thing
from pyroute2.netlink import exceptions
__import__("socket")
__import__("ctypes.util", globals(), locals(), ["find_library"], 0)
__import__("netns", globals(), locals(), [], 2)
importlib.import_module("cni.io.masq")
importlib.import_module(".files", "cni.io")
importlib.import_module(".x", package=__package__)
importlib.import_module(f"cni.commands.{command}")
__import__(name)
try:
    import fcntl
except ImportError:
    fcntl = None
class Holder:
    import select
if TYPE_CHECKING:
    from collections.abc import Iterator
def f():
    import random
    from ..commands import add
    try:
        from subprocess import run
    finally:
        pass
async def g():
    import asyncio
h = lambda: __import__("threading")
"""


def test_the_scanner_sees_every_import_form_and_resolves_relative_ones() -> None:
    found = scan(FORMS, "cni.core.plan")
    got = [(i.name, i.module_level, i.form) for i in found]
    assert got == [
        ("os.path", True, "import"), ("json", True, "import"),
        ("time.monotonic", True, "from"),
        ("cni.core.sibling", True, "relative"),
        ("cni.core.errors.CNIError", True, "relative"),
        ("cni.io", True, "relative"),
        ("cni.io.link", True, "relative"),
        ("", True, "relative"),              # three dots climb above cni: unresolvable
        ("pyroute2.netlink.exceptions", True, "from"),
        ("socket", True, "call"),
        ("ctypes.util", True, "call"),
        ("cni.netns", True, "call"),                    # __import__ with level 2
        ("cni.io.masq", True, "call"),
        ("cni.io.files", True, "call"),                 # relative to the package given
        ("cni.core.x", True, "call"),                   # relative to this one
        ("cni.commands", True, "call"),                 # an f-string's constant beginning
        ("", True, "call"),                             # a name not known until it runs
        ("fcntl", True, "import"),
        ("select", True, "import"),                     # class bodies run at import
        ("collections.abc.Iterator", True, "from"),
        ("random", False, "import"),
        ("cni.commands.add", False, "relative"),
        ("subprocess.run", False, "from"),
        ("asyncio", False, "import"),
        ("threading", False, "call"),
    ]


def test_relative_imports_resolve_from_a_package_init_and_a_module() -> None:
    assert resolve("cni.core", 1, "errors") == "cni.core.errors"
    assert resolve("cni.core", 2, None) == "cni"
    assert resolve("cni.core", 2, "io") == "cni.io"
    assert resolve("cni.core", 3, None) == ""
    assert [i.name for i in scan("from . import errors\n", "cni.core", is_package=True)] \
        == ["cni.core.errors"]
    assert [i.name for i in scan("from . import errors\n", "cni.core.plan")] \
        == ["cni.core.errors"]


def test_the_rules_below_would_catch_what_they_forbid() -> None:
    """Each rule, fed a module that breaks it, finds the break."""
    bad_core = scan("from .. import io\nfrom ..io.link import find\nimport socket\n"
                    "from .plan import x\n__import__('json')\n", "cni.core.ipam")
    assert [i.name for i in bad_core if not core_allows("cni.core", i)] == [
        "cni.io", "cni.io.link.find", "socket", "json"]
    crypto = ("from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
              "from cryptography import x509\nimport cryptography\n")
    assert [i.name for i in scan(crypto, "flanneld.core.sealing")
            if not core_allows("flanneld.core", i)] == ["cryptography.x509", "cryptography"]
    assert [i.name for i in scan(crypto, "cni.core.plan") if not core_allows("cni.core", i)] \
        == ["cryptography.hazmat.primitives.ciphers.aead.AESGCM", "cryptography.x509",
            "cryptography"]
    assert [i.name for i in scan("from ..core import lease\n", "flanneld.io.etcd")
            if crosses("flanneld", i)] == []
    assert [i.name for i in scan("from cni.core import plan\nimport lab.netns\n",
                                 "flanneld.daemon") if crosses("flanneld", i)] \
        == ["cni.core.plan", "lab.netns"]


def test_the_allowlist_holds_no_io_module() -> None:
    assert PURE_STDLIB & IO_MODULES == set()
    assert all(m.split(".")[0] not in IO_MODULES | PURE_STDLIB
               for allowed in PURE_THIRD_PARTY.values() for m in allowed)


def test_the_packages_are_there() -> None:
    names = {m.name for m in CORE_MODULES}
    assert {f"cni.core.{n}" for n in ("errors", "version", "skel", "netconf", "subnet_env",
                                      "result", "ipam", "plan", "attachment", "masq_rules")} \
        <= names
    assert {"flanneld.core"} | {f"flanneld.core.{n}" for n in (
        "errors", "config", "lease", "lease_policy", "lease_watch", "subnet_file",
        "iptables")} <= names
    assert {m.name for m in SHIPPED_MODULES} >= names | {"cni.__main__", "cni.io.masq",
                                                          "flanneld.__main__"}


# --- the rules --------------------------------------------------------------------------

def core_allows(core: str, imp: Import) -> bool:
    """Static imports of the core itself, of pure stdlib modules and of the core's pure
    third-party modules; no import calls."""
    return imp.form != "call" and (
        imp.within(core) or (imp.top in PURE_STDLIB and imp.top not in IO_MODULES)
        or any(imp.within(m) for m in PURE_THIRD_PARTY.get(core, ())))


def crosses(program: str, imp: Import) -> bool:
    """Whether an import in `program` reaches the other program or what does not ship."""
    others = [p for p in SHIPPED if p != program] + list(NOT_SHIPPED)
    return imp.name == "" or any(imp.within(p) for p in others)


@pytest.mark.parametrize("module", CORE_MODULES, ids=ids)
def test_a_core_module_imports_only_its_core_and_pure_stdlib(module: Module) -> None:
    core = next(c for c in CORES if module.name == c or module.name.startswith(c + "."))
    bad = [where(module, i) for i in module.imports() if not core_allows(core, i)]
    assert bad == [], f"{core} does no I/O and stays inside itself"


@pytest.mark.parametrize("module", SHIPPED_MODULES, ids=ids)
def test_shipped_code_imports_neither_the_other_program_nor_what_does_not_ship(
        module: Module) -> None:
    program = module.name.split(".")[0]
    bad = [where(module, i) for i in module.imports() if crosses(program, i)]
    assert bad == []


@pytest.mark.parametrize("module", CORE_MODULES, ids=ids)
def test_a_core_module_has_a_docstring(module: Module) -> None:
    assert ast.get_docstring(ast.parse(module.source)), f"{module.path.name} needs a docstring"


@pytest.mark.parametrize("module", [m for m in SHIPPED_MODULES if m.name == "cni.__main__"]
                         + [m for m in CORE_MODULES if m.name.startswith("cni.")], ids=ids)
def test_the_plugin_entry_and_core_load_no_pyroute2_at_import(module: Module) -> None:
    assert [where(module, i) for i in module.imports()
            if i.module_level and i.top == "pyroute2"] == []
