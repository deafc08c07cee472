"""CNI error codes and the one exception the plugin raises."""

from __future__ import annotations

TYPE_CHECKING = False      # typing itself is not imported: VERSION and errors stay light
if TYPE_CHECKING:
    from collections.abc import Callable

# Codes from the CNI spec's error table (plus libcni's 8 and 999).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
INTERNAL = 999

# Plugin-specific codes (100+ are free for plugins).
IP_EXHAUSTED = 100
ALREADY_EXISTS = 101
CHECK_FAILED = 102
KERNEL_FAILURE = 103


def shown(value: object, limit: int = 80, render: Callable[[object], str] = repr) -> str:
    """`value` as an error message shows it (its repr, or JSON with render=json.dumps), cut
    to `limit` characters: an ID or a config value can be huge, or nested too deeply to
    render."""
    try:
        text = render(value)
    except RecursionError:
        return "(a value nested too deeply to show)"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class CNIError(Exception):
    """A failure the plugin reports as the spec's error object.

    A plain class, not a dataclass: VERSION and the error paths import nothing more."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(code, msg, details)
        self.code, self.msg, self.details = code, msg, details

    def __repr__(self) -> str:
        return f"CNIError({self.code!r}, {self.msg!r}, {self.details!r})"

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def to_dict(self, cni_version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out
