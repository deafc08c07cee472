"""flanneld's CNI worker: which executable serves, and that it is started again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from flanneld.io import cni_worker


def test_an_explicit_plugin_wins_else_the_one_beside_flanneld() -> None:
    assert cni_worker.find_plugin("/opt/x/pyflannel") == "/opt/x/pyflannel"
    beside = Path(sys.executable).parent / "pyflannel"
    if beside.exists():
        assert cni_worker.find_plugin("") == str(beside)


def test_a_server_that_exits_is_started_again_and_stopped_for_good(tmp_path, monkeypatch
                                                                  ) -> None:
    starts = tmp_path / "starts"
    script = tmp_path / "serve"
    script.write_text(f"#!/bin/sh\necho x >> {starts}\nsleep 0.1\n")
    script.chmod(0o755)
    monkeypatch.setattr(cni_worker, "RESTART_DELAY", 0.05)
    worker = cni_worker.CniWorker(str(script), str(tmp_path / "cni.sock"))
    worker.start()
    deadline = time.monotonic() + 10
    while (not starts.exists() or len(starts.read_text().split()) < 2) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    assert len(starts.read_text().split()) >= 2
    seen = len(starts.read_text().split())
    time.sleep(0.3)
    assert len(starts.read_text().split()) == seen
