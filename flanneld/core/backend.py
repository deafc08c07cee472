"""The backend seam: what the daemon asks of a data plane, and the one list of backends.

`KINDS` is the registry by name (flannel's `Backend.Type`, matched case-insensitively):
the network config is validated against it, and `flanneld.backends` maps each kind to its
implementation (a test checks that the two agree). A kind holds what is known of a
backend before any I/O; a `Backend` is a started-or-not data plane for one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .routes import Routes


@dataclass(frozen=True)
class BackendKind:
    """A backend as the network config and the subnet file see it."""

    name: str          # lower case
    default_port: int  # Backend.Port when the config gives none (or 0)
    overhead: int      # bytes of encapsulation per packet: MTU = underlay MTU - overhead


UDP = BackendKind("udp", default_port=8285, overhead=28)  # outer IPv4 20 + UDP 8
KINDS: dict[str, BackendKind] = {kind.name: kind for kind in (UDP,)}


class Backend(Protocol):
    """A node's data plane. `start` raises FlannelError when it cannot run; after it,
    routes may be set from any thread; `stop` is idempotent."""

    @property
    def mtu(self) -> int:
        """The MTU pods get (the subnet file's FLANNEL_MTU)."""
        ...

    def start(self) -> None: ...
    def stop(self) -> None: ...

    def set_routes(self, routes: Routes) -> None:
        """Forward to the peers in `routes` from now on (a snapshot, swapped in whole)."""
        ...

    def alive(self) -> bool:
        """Started, not stopped, and forwarding (its threads running)."""
        ...

    def tun_problem(self) -> str | None:
        """None while packets can flow; else why not (e.g. the tun device is gone)."""
        ...

    def counters(self) -> dict[str, int]:
        """Monotonic counts since construction, for /metrics."""
        ...

    def gauges(self) -> dict[str, int]:
        """Current values for /metrics (e.g. which offloads are on)."""
        ...
