"""Which CNI spec versions the plugin speaks, and what each version allows."""

from __future__ import annotations

from .errors import INCOMPATIBLE_VERSION, CNIError, shown

SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT = "1.1.0"


def parse(version: str) -> tuple[int, int, int]:
    """'0.4.0' -> (0, 4, 0); anything else is an incompatible version."""
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CNIError(INCOMPATIBLE_VERSION, "invalid cniVersion", repr(version))
    return int(parts[0]), int(parts[1]), int(parts[2])


def require_supported(version: str) -> None:
    parse(version)
    if version not in SUPPORTED:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {shown(version)}, plugin supports {list(SUPPORTED)}",
        )


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def has_ip_version_field(version: str) -> bool:
    """0.3.x and 0.4.0 results carry "version" in every ips entry; 1.0.0 dropped it."""
    return parse(version) < (1, 0, 0)


# The first spec version that has each command.
COMMAND_MIN_VERSION = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def require_command_allowed(command: str, version: str) -> None:
    minimum = COMMAND_MIN_VERSION.get(command)
    if minimum and not at_least(version, minimum):
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f"{command} needs cniVersion >= {minimum}, config is {version}",
        )
