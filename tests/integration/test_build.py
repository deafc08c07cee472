"""What only the PyInstaller builds can get wrong: their layout once installed elsewhere,
the environment their children see, and the version they report."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from lab.plugin import invoke
from tests.conftest import Node

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_plugin_runs_from_a_copy_installed_behind_a_symlink(built: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    """The DaemonSet's layout: /opt/cni/bin/pyflannel -> pyflannel.d-<id>/pyflannel, the
    bundle copied; the bootloader finds _internal/ beside the symlink's target."""
    shutil.copytree(built["pyflannel"].parent, tmp_path / "pyflannel.d-test", symlinks=True)
    (tmp_path / "pyflannel").symlink_to("pyflannel.d-test/pyflannel")
    proc = subprocess.run([tmp_path / "pyflannel"], input=b"", capture_output=True,
                          env={"CNI_COMMAND": "VERSION"}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert b'"supportedVersions"' in proc.stdout


@pytest.mark.parametrize("library_path", [None, "/opt/runtime/lib"])
def test_children_see_the_callers_library_path(library_path: str | None, built: dict[str, Path],
                                               node: Node, namespaces, tmp_path: Path,
                                               monkeypatch) -> None:
    """The bootloader puts _internal/ on LD_LIBRARY_PATH for itself; iptables-restore,
    which the plugin runs for ipMasq, gets the runtime's value back (or none)."""
    fake = tmp_path / "bin" / "iptables-restore"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "${{LD_LIBRARY_PATH-unset}}" > {tmp_path}/seen\n'
                    f'exec {shutil.which("iptables-restore")} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PYFLANNEL_CNI_BIN", str(built["pyflannel"]))
    env = {"PATH": f"{fake.parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    if library_path:
        env["LD_LIBRARY_PATH"] = library_path
    out = invoke("ADD", node.conf(ipMasq=True), node=node.netns, container_id="c1",
                 netns=namespaces.path(namespaces.make("pfpod")), extra_env=env)
    assert out.code == 0, out.stdout + out.stderr
    assert (tmp_path / "seen").read_text().strip() == (library_path or "unset")


def test_flanneld_reports_the_projects_version(built: dict[str, Path]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = subprocess.run([built["flanneld"], "--version"], capture_output=True, text=True,
                          timeout=30)
    assert proc.stdout.strip() == f"flanneld (pyflannel) {version}"
