"""Clusters left running (`make demo KEEP=1`), recorded on disk so `make down` removes them.

A record names exactly what the cluster made: its namespaces, its work directory and its
processes. A process is recorded with its start time, so a pid the kernel has since given
to another program is never signalled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.netns import run

STATE_DIR = Path("/run/pyflannel-demo")


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot); None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces
    return int(stat.rpartition(")")[2].split()[19])


@dataclass(frozen=True)
class Process:
    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> Process:
        started = start_time(pid)
        if started is None:
            raise RuntimeError(f"process {pid} is not running")
        return cls(pid, started)

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` s; waits until it is gone."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            if not self.alive():
                return
            os.kill(self.pid, sig)
            deadline = time.monotonic() + wait
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)


@dataclass(frozen=True)
class KeptCluster:
    name: str
    workdir: str
    namespaces: tuple[str, ...]
    processes: tuple[Process, ...]  # stopped in this order

    def save(self, state_dir: Path = STATE_DIR) -> Path:
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / f"{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> KeptCluster:
        raw = json.loads(path.read_text())
        return cls(raw["name"], raw["workdir"], tuple(raw["namespaces"]),
                   tuple(Process(**p) for p in raw["processes"]))

    def remove(self) -> None:
        for proc in self.processes:
            proc.stop()
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def remove_all(state_dir: Path = STATE_DIR) -> list[str]:
    """Remove every cluster recorded in `state_dir`; their names."""
    removed = []
    for path in sorted(state_dir.glob("*.json")):
        kept = KeptCluster.load(path)
        kept.remove()
        path.unlink()
        removed.append(kept.name)
    return removed
