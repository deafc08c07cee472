"""build.freeze's decisions: when build/dist is stale, and what differs between two builds."""

from __future__ import annotations

from build.freeze import differences, fingerprint, rebuild_reason

FILES = {"cni/__main__.py": b"print(1)\n", "pyproject.toml": b"[project]\n"}
TOOLS = {"python": "3.11.7", "dist pyroute2": "0.9.7"}


def test_the_fingerprint_follows_every_input_and_no_order() -> None:
    base = fingerprint(FILES, TOOLS)
    assert fingerprint(dict(reversed(FILES.items())), dict(reversed(TOOLS.items()))) == base
    changed = [
        fingerprint({**FILES, "cni/__main__.py": b"print(2)\n"}, TOOLS),  # content
        fingerprint({"cni/main.py" if k == "cni/__main__.py" else k: v  # a rename
                     for k, v in FILES.items()}, TOOLS),
        fingerprint({**FILES, "cni/new.py": b""}, TOOLS),  # a new file
        fingerprint(FILES, {**TOOLS, "dist pyroute2": "0.9.8"}),  # an upgraded package
        fingerprint(FILES, {**TOOLS, "dist grpcio": "1.85.1"}),  # a new package
    ]
    assert len({base, *changed}) == 1 + len(changed)


def test_rebuild_reasons() -> None:
    current = fingerprint(FILES, TOOLS)
    assert rebuild_reason(current + "\n", current, []) is None
    assert rebuild_reason(None, current, ["pyflannel"]) == "no finished build"
    assert rebuild_reason(current, current, ["flanneld"]) == "flanneld missing"
    assert rebuild_reason("0" * 64, current, []) == "an input changed"


def test_differences_name_changed_added_and_removed_files() -> None:
    a = {"pyflannel/pyflannel": "1", "pyflannel/_internal/x.pyc": "2", "gone": "3"}
    b = {"pyflannel/pyflannel": "1", "pyflannel/_internal/x.pyc": "9", "new": "4"}
    assert differences(a, a) == []
    assert differences(a, b) == ["gone", "new", "pyflannel/_internal/x.pyc"]
