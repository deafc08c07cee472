"""The exec'd plugin loads only what a command needs: VERSION loads no netlink, no shell
and no command module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_version_command_does_not_load_pyroute2() -> None:
    probe = ("import sys, json\nimport cni.__main__ as m\n"
             "m._exit_now = lambda code: code\n"     # (it ends the process; the probe goes on)
             "rc = m.main()\n"
             "print(json.dumps([rc, sorted(n for n in sys.modules if n.split('.')[0] in "
             "('pyroute2', 'flanneld') or n.startswith(('cni.io', 'cni.commands.')))]), "
             "file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = "VERSION"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(out.stderr) == [0, []]
    assert json.loads(out.stdout) == {"cniVersion": "1.1.0", "supportedVersions": [
        "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
