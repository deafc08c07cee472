"""`make demo KEEP=1` leaves a working cluster up and `make down` removes all of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.kept import KeptCluster, remove_all
from lab.netns import NETNS_DIR
from lab.plugin import ping

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.demo", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def state_dir(tmp_path):
    try:
        yield tmp_path
    finally:
        remove_all(tmp_path)  # whatever a failed test left up


def test_kept_demo_stays_up_until_down(state_dir):
    out = demo("--keep", "--nodes", "2", "--seconds", "1", "--state-dir", str(state_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    [record] = state_dir.glob("*.json")
    kept = KeptCluster.load(record)
    assert "make down" in out.stdout and "etcdctl --endpoints=" in out.stdout

    # still up after the demo process has gone: daemons, etcd, namespaces, pods talking
    assert all(p.alive() for p in kept.processes) and len(kept.processes) == 3
    assert all(Path(NETNS_DIR, ns).exists() for ns in kept.namespaces)
    pod_cmd = next(line for line in out.stdout.splitlines() if "a pod:" in line).split()
    pod_ns, peer_ip = pod_cmd[pod_cmd.index("exec") + 1], pod_cmd[-1]
    assert ping(pod_ns, peer_ip, count=1)

    down = demo("--down", "--state-dir", str(state_dir))
    assert down.returncode == 0 and kept.name in down.stdout
    assert not any(p.alive() for p in kept.processes)
    assert not any(Path(NETNS_DIR, ns).exists() for ns in kept.namespaces)
    assert not Path(kept.workdir).exists() and not record.exists()
    assert "no demo cluster is up" in demo("--down", "--state-dir", str(state_dir)).stdout
