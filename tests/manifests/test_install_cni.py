"""build/install-cni, run as the DaemonSet's init containers run it: the exact command of
manifests/pyflannel.yml with every absolute path mapped under a temporary root, which
holds the image's files (the script, a fake PyInstaller onedir of the plugin) and the
ConfigMap's files where the init container mounts them. Checks: modes, no temporary files
left, every replacement by rename (an open file keeps its old content, the symlink is never
missing), old versions removed, the symlinked executable runs, re-runs change nothing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from .manifest import INSTALL_CNI, configmap_files, container

PLUGIN = "/opt/cni/bin/pyflannel"
CONFLIST = "/etc/cni/net.d/10-pyflannel.conflist"


class Node:
    """A temporary root standing for both the image (/opt/pyflannel) and the node."""

    def __init__(self, root: Path) -> None:
        self.root = root
        script = self.path("/opt/pyflannel/install-cni")
        script.parent.mkdir(parents=True)
        shutil.copy2(INSTALL_CNI, script)
        self.build_plugin("v1")

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def build_plugin(self, version: str) -> None:
        """The image's onedir build: an executable and _internal/ (a file, a symlink)."""
        onedir = self.path("/opt/pyflannel/cni")
        shutil.rmtree(onedir, ignore_errors=True)
        (onedir / "_internal" / "lib").mkdir(parents=True)
        exe = onedir / "pyflannel"
        exe.write_text(f'#!/bin/sh\nd=$(dirname "$(readlink -f "$0")")\n'
                       f'echo "pyflannel {version}"; cat "$d/_internal/lib/data"\n')
        exe.chmod(0o700)  # modes are the installer's job
        (onedir / "_internal" / "lib" / "data").write_text(f"data {version}\n")
        (onedir / "_internal" / "lib" / "data").chmod(0o600)
        (onedir / "_internal" / "libdata.so").symlink_to("lib/data")

    def run(self, name: str) -> subprocess.CompletedProcess:
        """The init container `name`'s command, absolute paths under the root, with the
        ConfigMap's files where it mounts them."""
        spec = container(name)
        for path, text in configmap_files(spec).items():
            self.path(path).parent.mkdir(parents=True, exist_ok=True)
            self.path(path).write_text(text)
        command = [str(self.path(arg)) if arg.startswith("/") else arg
                   for arg in spec["command"] + spec.get("args", [])]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def install(self) -> None:
        for name in ("install-cni-plugin", "install-cni"):
            result = self.run(name)
            assert result.returncode == 0, result.stderr

    def plugin_output(self) -> str:
        return subprocess.run([self.path(PLUGIN)], capture_output=True, text=True,
                              check=True).stdout

    def snapshot(self) -> dict[str, tuple]:
        """Every entry under the node's CNI dirs: inode, mode, mtime, symlink target."""
        found = {}
        for top in ("/opt/cni/bin", "/etc/cni/net.d"):
            for path in [self.path(top), *self.path(top).rglob("*")]:
                st = path.lstat()
                found[str(path.relative_to(self.root))] = (
                    st.st_ino, st.st_mode, st.st_mtime_ns,
                    os.readlink(path) if path.is_symlink() else None)
        return found


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def entries(node: Node) -> list[str]:
    return sorted(p.name for p in node.path("/opt/cni/bin").iterdir())


def version(node: Node) -> str:
    """The one installed version directory, beside the symlink and nothing else."""
    [link, installed] = entries(node)
    assert link == "pyflannel" and installed.startswith("pyflannel.d-")
    return installed


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_fresh_install(node: Node) -> None:
    node.install()
    link = node.path(PLUGIN)
    installed = node.path(f"/opt/cni/bin/{version(node)}")
    assert link.is_symlink() and os.readlink(link) == f"{installed.name}/pyflannel"
    # libcni's check: the plugin path stats (through the link) as a regular file.
    assert stat.S_ISREG(os.stat(link).st_mode)
    assert node.plugin_output() == "pyflannel v1\ndata v1\n"
    assert mode(installed) == mode(installed / "_internal") == 0o755
    assert mode(installed / "pyflannel") == 0o755
    assert mode(installed / "_internal" / "lib" / "data") == 0o644
    assert os.readlink(installed / "_internal" / "libdata.so") == "lib/data"
    conflist = node.path(CONFLIST)
    assert conflist.read_text() == node.path("/etc/kube-pyflannel/cni-conf.json").read_text()
    assert mode(conflist) == 0o644 and not conflist.is_symlink()
    assert sorted(p.name for p in conflist.parent.iterdir()) == ["10-pyflannel.conflist"]


def test_a_rerun_changes_nothing(node: Node) -> None:
    node.install()
    before = node.snapshot()
    node.install()
    assert node.snapshot() == before


def test_an_old_regular_file_is_replaced_by_rename(node: Node) -> None:
    old = node.path(PLUGIN)
    old.parent.mkdir(parents=True)
    old.write_text("#!/bin/sh\necho old plugin\n")
    old.chmod(0o755)
    conflist = node.path(CONFLIST)
    conflist.parent.mkdir(parents=True)
    conflist.write_text('{"old": true}')
    with open(old, "rb") as plugin_fd, open(conflist, "rb") as conflist_fd:
        node.install()
        # The open files are the old inodes, unlinked by the rename and untouched.
        assert plugin_fd.read() == b"#!/bin/sh\necho old plugin\n"
        assert os.fstat(plugin_fd.fileno()).st_nlink == 0
        assert conflist_fd.read() == b'{"old": true}'
        assert os.fstat(conflist_fd.fileno()).st_nlink == 0
    assert node.plugin_output() == "pyflannel v1\ndata v1\n"


def test_an_upgrade_swaps_the_symlink_and_removes_the_old_version(node: Node) -> None:
    node.install()
    v1 = version(node)
    old_exe = node.path(f"/opt/cni/bin/{v1}/pyflannel")
    with open(old_exe, "rb") as running:
        node.build_plugin("v2")
        result = node.run("install-cni-plugin")
        assert result.returncode == 0, result.stderr
        assert running.read().startswith(b"#!/bin/sh")  # an open copy still reads
    v2 = version(node)
    assert v2 != v1 and not node.path(f"/opt/cni/bin/{v1}").exists()
    assert node.plugin_output() == "pyflannel v2\ndata v2\n"
    assert f"removed {node.path('/opt/cni/bin')}/{v1}" in result.stdout


def test_the_symlink_is_never_missing_during_upgrades(node: Node) -> None:
    node.install()
    link, targets, stop = node.path(PLUGIN), set(), threading.Event()
    errors: list[BaseException] = []

    def watch() -> None:
        while not stop.is_set():
            try:
                targets.add(os.readlink(link))
            except OSError as e:
                errors.append(e)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(6):
            node.build_plugin(f"v{i % 2 + 2}")
            assert node.run("install-cni-plugin").returncode == 0
    finally:
        stop.set()
        watcher.join()
    assert errors == [] and len(targets) == 3  # v1, then v2 and v3 in turn


def test_a_damaged_install_is_repaired_and_leftovers_removed(node: Node) -> None:
    node.install()
    v1 = version(node)
    node.path(f"/opt/cni/bin/{v1}/_internal/lib/data").write_text("")
    leftover = node.path("/opt/cni/bin/.pyflannel.d-0123456789abcdef.tmp")
    leftover.mkdir()
    result = node.run("install-cni-plugin")
    assert result.returncode == 0, result.stderr
    assert version(node) == v1
    assert node.plugin_output() == "pyflannel v1\ndata v1\n"


def test_a_changed_conflist_is_replaced_and_a_same_one_is_left_alone(node: Node) -> None:
    node.install()
    conflist = node.path(CONFLIST)
    inode = conflist.stat().st_ino
    conflist.chmod(0o600)
    assert "is up to date" in node.run("install-cni").stdout
    assert conflist.stat().st_ino == inode and mode(conflist) == 0o644
    conflist.write_text("{}")
    assert "installed" in node.run("install-cni").stdout
    assert conflist.stat().st_ino != inode
    assert conflist.read_text() == node.path("/etc/kube-pyflannel/cni-conf.json").read_text()


@pytest.mark.parametrize("args, message", [
    (["plugin", "/nowhere", "/opt/cni/bin/pyflannel"],
     "/nowhere/pyflannel: no executable to install"),
    (["conflist", "/nowhere.json", "/etc/cni/net.d/x.conflist"], "no file to install"),
    (["other", "a", "b"], "unknown kind 'other'"),
    (["plugin"], "usage: install-cni plugin SRC_DIR DEST"),
])
def test_bad_arguments_fail_clearly(args: list[str], message: str) -> None:
    result = subprocess.run([INSTALL_CNI, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and message in result.stderr


def test_the_script_is_executable_posix_sh() -> None:
    assert INSTALL_CNI.read_text().startswith("#!/bin/sh\n")
    assert mode(INSTALL_CNI) == 0o755
    assert subprocess.run(["sh", "-n", INSTALL_CNI]).returncode == 0
