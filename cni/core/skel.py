"""The CNI_* environment of one invocation, parsed and validated as libcni's skel does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import INVALID_ENVIRONMENT, CNIError

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")

# Required variables per command. CNI_PATH is required by skel but the plugin never
# executes a delegate, so it is accepted as optional here.
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "STATUS": (),
    "GC": (),
    "VERSION": (),
}


@dataclass(frozen=True)
class Invocation:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()


def validate_ifname(name: str) -> None:
    problem = ""
    if not name:
        problem = "is empty"
    elif len(name.encode()) > 15:
        problem = "is longer than 15 bytes"
    elif name in (".", ".."):
        problem = "is '.' or '..'"
    elif any(c in name for c in "/:") or any(c.isspace() for c in name):
        problem = "contains '/', ':' or whitespace"
    if problem:
        raise CNIError(INVALID_ENVIRONMENT, "invalid CNI_IFNAME", f"{name!r} {problem}")


def validate_container_id(cid: str) -> None:
    if not ID_PATTERN.fullmatch(cid):
        raise CNIError(
            INVALID_ENVIRONMENT,
            "invalid CNI_CONTAINERID",
            f"{cid!r} must start with a letter or digit, then letters, digits, '_', '.' or '-'",
        )


def parse_args(raw: str) -> dict[str, str]:
    """CNI_ARGS 'K=V;K2=V2' into a dict; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in filter(None, raw.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"pair {pair!r} is not K=V")
        out[key] = value
    return out


def parse_environment(env: Mapping[str, str]) -> Invocation:
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}")
    missing = [name for name in _REQUIRED[command] if not env.get(name)]
    if missing:
        raise CNIError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    inv = Invocation(
        command=command,
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=parse_args(env.get("CNI_ARGS", "")),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
    )
    if command in ("ADD", "CHECK", "DEL"):
        validate_container_id(inv.container_id)
        validate_ifname(inv.ifname)
    return inv
