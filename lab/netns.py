"""Network namespaces the tests create, with unique names, removed on teardown.

Nothing here touches the root namespace: every device, address, route and rule a
test makes lives in a namespace made by `Namespaces.make`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import uuid
from collections.abc import Iterator

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def unique(prefix: str) -> str:
    """A short name unique to this run (fits in 15 characters with a prefix of 6)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def run(*cmd: str, netns: str | None = None, check: bool = True, timeout: float = 30,
        **kw) -> subprocess.CompletedProcess:
    if netns:
        cmd = ("ip", "netns", "exec", netns, *cmd)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout,
                          **kw)


class Namespaces:
    """Creates namespaces on demand and deletes exactly those on `cleanup`."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def make(self, prefix: str = "pft") -> str:
        name = unique(prefix)
        run("ip", "netns", "add", name)
        self.made.append(name)
        run("ip", "link", "set", "lo", "up", netns=name)
        return name

    def path(self, name: str) -> str:
        return os.path.join(NETNS_DIR, name)

    def remove(self, name: str) -> None:
        if name in self.made:
            self.made.remove(name)
            run("ip", "netns", "del", name, check=False)

    def cleanup(self) -> None:
        for name in reversed(self.made):
            # Deleting the namespace deletes every device in it.
            run("ip", "netns", "del", name, check=False)
        self.made.clear()


@contextlib.contextmanager
def inside(netns_path: str) -> Iterator[None]:
    """This thread in the namespace at `netns_path` for the body; sockets and fds made there
    stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"cannot enter {netns_path}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "cannot return to the test's namespace")
    finally:
        os.close(target)
        os.close(home)
