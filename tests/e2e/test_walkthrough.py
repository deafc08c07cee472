"""The README's cnitool walkthrough, run as it is written (only its names made unique)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.netns import NETNS_DIR, run, unique

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- walkthrough:"
NAMES_LINE = "NODE=walk-node POD=walk-pod DIR=/tmp/pyflannel-walkthrough"


def walkthrough() -> str:
    """The shell block right after the walkthrough marker in README.md."""
    text = (REPO / "README.md").read_text()
    after = text[text.index(MARKER):].split("```sh\n", 1)[1]
    return after.split("\n```", 1)[0]


@pytest.fixture
def names(tmp_path):
    node, pod = unique("walkn"), unique("walkp")
    try:
        yield node, pod, tmp_path / "walk"
    finally:
        for ns in (pod, node):  # if the block stopped half-way
            if Path(NETNS_DIR, ns).exists():
                run("ip", "netns", "del", ns, check=False)


def test_readme_walkthrough_runs(names, built, cnitool):
    node, pod, directory = names
    script = walkthrough()
    assert script.startswith(NAMES_LINE + "\n")
    script = script.replace(NAMES_LINE, f"NODE={node} POD={pod} DIR={directory}", 1)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"address": "10.244.1.2/24"' in proc.stdout          # add printed the result
    assert "eth0@" in proc.stdout and "10.244.1.2/24" in proc.stdout  # ip -br addr
    assert "1 received" in proc.stdout                          # ping the gateway
    assert not Path(NETNS_DIR, node).exists() and not directory.exists()
