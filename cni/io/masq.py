"""Masquerading for a pod's traffic leaving the cluster network: runs iptables with the
rules `core.masq_rules` writes."""

from __future__ import annotations

import ctypes
import os
import signal
from functools import partial
from ipaddress import IPv4Address, IPv4Network

from ..core import masq_rules
from ..core.errors import KERNEL_FAILURE, CNIError

PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None).prctl     # resolved here, so the forked child only calls it
RESTORE = ("iptables-restore", "--noflush", "-w", "10")
LIST_NAT = ("iptables", "-w", "10", "-t", "nat", "-S")


def _die_with(parent: int) -> None:
    """In the child, before exec: if the plugin is killed mid-call, iptables goes too,
    rather than changing the rules after a DEL or GC has already looked at them."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:      # the parent died before prctl took effect
        os._exit(1)


def _run(cmd: tuple[str, ...], stdin: str | None = None) -> str:
    """Run iptables. Only a run that changes rules (`iptables-restore`, fed on stdin) is
    tied to the plugin's life: that costs a fork instead of a vfork (bench/README.md)."""
    import subprocess  # here: only a call with ipMasq pays for loading it (about 3 ms)
    tie = partial(_die_with, os.getpid()) if stdin is not None else None
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60,
                              preexec_fn=tie)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CNIError(KERNEL_FAILURE, f"cannot run {cmd[0]}", str(e)) from None
    if proc.returncode != 0:
        raise CNIError(KERNEL_FAILURE, f"{' '.join(cmd[:3])} failed", proc.stderr.strip())
    return proc.stdout


def setup(chain: str, ip: IPv4Address, exempt: tuple[IPv4Network, ...], comment: str) -> None:
    _run(RESTORE, masq_rules.setup_payload(chain, ip, exempt, comment))


def teardown(chain: str) -> None:
    """Remove the chain and every POSTROUTING jump to it; nothing there is fine."""
    payload = masq_rules.removal_payload(chain, _run(LIST_NAT))
    if payload:
        _run(RESTORE, payload)


def present(chain: str, ip: IPv4Address) -> bool:
    return masq_rules.is_present(chain, ip, _run(LIST_NAT))
