"""Network namespaces the tests create, with unique names, removed on teardown.

Nothing here touches the root namespace: every device, address, route and rule a
test makes lives in a namespace made by `Namespaces.make`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

from cni.io import netns

NETNS_DIR = "/run/netns"


def unique(prefix: str) -> str:
    """A short name unique to this run (fits in 15 characters with a prefix of 6)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def run(*cmd: str, netns: str | None = None, check: bool = True, timeout: float = 30,
        **kw: Any) -> subprocess.CompletedProcess[str]:
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
    stay there. The plugin's own way in (`cni.io.netns.inside`): a failure to enter or to
    come back is a CNIError naming the namespace."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with netns.inside(fd, netns_path):
            yield
    finally:
        os.close(fd)
