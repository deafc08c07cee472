"""Installs flannel's iptables chains and keeps them in place (the shell over core.iptables).

Runs `iptables -S` and `iptables-restore --noflush` in the daemon's network namespace,
waiting for the xtables lock like the CNI plugins do.
"""

from __future__ import annotations

import logging
import subprocess

from ..core.errors import FlannelError
from ..core.iptables import ChainSpec, in_sync, removal_payload, restore_payload

log = logging.getLogger("flanneld.iptables")
LOCK_WAIT = "10"  # seconds to wait for the xtables lock


def _run(cmd: list[str], stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FlannelError(f"cannot run {cmd[0]}: {e}") from None
    if proc.returncode != 0:
        raise FlannelError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _listing(table: str) -> str:
    return _run(["iptables", "-w", LOCK_WAIT, "-t", table, "-S"])


def ensure(spec: ChainSpec) -> bool:
    """Make the table hold exactly the chain's rules and one jump; True if it changed."""
    listing = _listing(spec.table)
    if in_sync(spec, listing):
        return False
    _run(["iptables-restore", "--noflush", "-w", LOCK_WAIT], restore_payload(spec, listing))
    log.info("installed iptables chain %s in table %s (%d rules)",
             spec.chain, spec.table, len(spec.rules))
    return True


def remove(spec: ChainSpec) -> None:
    """Delete the chain and every jump to it; nothing there is fine."""
    payload = removal_payload(spec, _listing(spec.table))
    if payload:
        _run(["iptables-restore", "--noflush", "-w", LOCK_WAIT], payload)
        log.info("removed iptables chain %s from table %s", spec.chain, spec.table)


def supports_random_fully() -> bool:
    """Whether this iptables knows MASQUERADE --random-fully (iptables >= 1.6.2)."""
    try:
        out = subprocess.run(["iptables", "-j", "MASQUERADE", "--help"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--random-fully" in out.stdout
