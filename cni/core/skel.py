"""The CNI_* environment of one invocation, parsed and validated as libcni's skel does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import INVALID_ENVIRONMENT, CNIError, shown

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")

# Required variables per command. CNI_PATH is required by skel but the plugin never
# executes a delegate, so it is neither required nor read here.
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


# Bytes the kernel's dev_valid_name refuses in an interface name (its isspace() includes
# 0xA0, as in Latin-1), plus '%': a name with '%' is a pattern the kernel expands into
# another name (eth%d -> eth0), so the link would not be found under the name given.
_KERNEL_REFUSED = frozenset(b"/:%\t\n\v\f\r \xa0")
IFNAMSIZ = 16


def ifname_problem(name: str) -> str:
    """Why the kernel would not create a link named exactly `name` ("" when it would): the
    spec's rules (not empty, at most 15 bytes, not '.' or '..', no '/', ':' or whitespace)
    plus the kernel's ('%' patterns, its own notion of white space), valid UTF-8 so that
    results and records can hold it, and no control characters (the kernel takes them,
    but `ip -j` then prints JSON nobody can read)."""
    try:
        raw = name.encode()
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if not raw:
        return "is empty"
    if len(raw) >= IFNAMSIZ:
        return f"is longer than {IFNAMSIZ - 1} bytes"
    if raw in (b".", b".."):
        return "is '.' or '..'"
    if any(b in _KERNEL_REFUSED or b < 0x20 or b == 0x7F for b in raw) \
            or any(c.isspace() for c in name):
        return "contains '/', ':', '%', a control character or white space"
    return ""


def validate_ifname(name: str) -> None:
    problem = ifname_problem(name)
    if problem:
        raise CNIError(INVALID_ENVIRONMENT, "invalid CNI_IFNAME", f"{shown(name)} {problem}")


def validate_text(value: str, what: str, code: int = INVALID_ENVIRONMENT) -> None:
    """A string the plugin opens as a path or writes into its records, aliases and results
    (a netns path, a config path, an ID from a GC list): UTF-8, no NUL."""
    problem = ""
    if "\0" in value:
        problem = "contains a NUL byte"
    else:
        try:
            value.encode()
        except UnicodeEncodeError:
            problem = "is not valid UTF-8"
    if problem:
        raise CNIError(code, f"invalid {what}", f"{shown(value)} {problem}")


def validate_container_id(cid: str) -> None:
    if not ID_PATTERN.fullmatch(cid):
        raise CNIError(
            INVALID_ENVIRONMENT,
            "invalid CNI_CONTAINERID",
            f"{shown(cid)} must start with a letter or digit, then letters, digits, '_', '.' "
            "or '-'",
        )


def parse_args(raw: str) -> dict[str, str]:
    """CNI_ARGS 'K=V;K2=V2' into a dict; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in filter(None, raw.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENVIRONMENT, "invalid CNI_ARGS",
                           f"pair {shown(pair)} is not K=V")
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
    )
    if command in ("ADD", "CHECK", "DEL"):
        validate_container_id(inv.container_id)
        validate_ifname(inv.ifname)
        validate_text(inv.netns, "CNI_NETNS")
    return inv
