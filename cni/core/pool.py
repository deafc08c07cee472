"""The decisions of flanneld's CNI worker pool (`cni.serve`): which waiting workers to keep.

Workers wait between calls; the server keeps at most IDLE_WORKERS of them, and once the
node has been quiet for IDLE_SECONDS only the one it would hand the next call to. Pure:
times are arguments (monotonic seconds), no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

IDLE_WORKERS = 16           # workers kept waiting for a call, at most
IDLE_SECONDS = 30.0         # then all but one of them exit (each keeps ~3.5 MB of its own)
CALLS_PER_WORKER = 256      # then a worker exits: bounds what one may accumulate


def keeps_waiting(waiting: int, stopping: bool) -> bool:
    """Whether a worker done with its call joins the `waiting` ones, or exits."""
    return not stopping and waiting < IDLE_WORKERS


def retiring(since: Sequence[float], now: float) -> list[int]:
    """The positions in `since` (when each waiting worker began to wait, in the order they
    began: the last is handed the next call) of those that exit now: every one that has
    waited IDLE_SECONDS, except the last."""
    return [i for i, t in enumerate(since[:-1]) if now - t >= IDLE_SECONDS]
