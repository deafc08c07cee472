"""The request a plugin process hands to flanneld's CNI worker, and the answer.

Over a unix stream socket, the client sends one request and shuts its side down:

    b"PFW1" | env length (4 bytes, big-endian) | netns errno (4 bytes) | env | stdin

`env` is the call's CNI_* and PYFLANNEL_* variables, each `NAME=value`, separated by
NUL bytes; stdin is the network configuration as the runtime wrote it. The same
message carries, as SCM_RIGHTS, an O_PATH descriptor of the client's root directory,
one of the network namespace the client runs in (the node's: the worker does the call
there) and, for ADD and CHECK, one of CNI_NETNS as the client opened it (else the errno
of that open, or 0 when it was not opened). The worker answers with one byte and closes:
b"0" or b"1" (the exit code) followed by the plugin's stdout, or b"C" alone: "do the
call yourself" (the worker is full, or it does not see the same files as the client).

No imports: the relaying client loads this and nothing else of the core.
"""

from __future__ import annotations

MAGIC = b"PFW1"
HEADER = len(MAGIC) + 8
ENV_LIMIT = 1 << 20                       # bytes of environment (Linux allows 2 MiB in all)
RELAYED_PREFIXES = ("CNI_", "PYFLANNEL_")
OPENS_NETNS = ("ADD", "CHECK")            # the commands that open CNI_NETNS
YOURSELF = b"C"


class BadRequest(ValueError):
    pass


def relayed_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(RELAYED_PREFIXES)}


def encode(env: dict[str, bytes], netns_errno: int, stdin: bytes) -> bytes:
    """The request's bytes; `env` values as the OS gives them (os.fsencode)."""
    blob = b"\0".join(k.encode() + b"=" + v for k, v in env.items())
    return (MAGIC + len(blob).to_bytes(4, "big") + netns_errno.to_bytes(4, "big")
            + blob + stdin)


def decode(data: bytes) -> tuple[dict[str, bytes], int, bytes]:
    """(env, netns errno, stdin) of a request; BadRequest when it is not one."""
    if len(data) < HEADER or data[:len(MAGIC)] != MAGIC:
        raise BadRequest("not a pyflannel relay request")
    size = int.from_bytes(data[4:8], "big")
    netns_errno = int.from_bytes(data[8:12], "big")
    if size > ENV_LIMIT or HEADER + size > len(data):
        raise BadRequest(f"environment of {size} bytes")
    env: dict[str, bytes] = {}
    for item in data[HEADER:HEADER + size].split(b"\0") if size else ():
        name, sep, value = item.partition(b"=")
        if not sep or not name:
            raise BadRequest("an environment entry without a name")
        key = name.decode("ascii", errors="replace")
        if not key.startswith(RELAYED_PREFIXES) or key in env:
            raise BadRequest(f"environment entry {key[:40]!r}")
        env[key] = value
    return env, netns_errno, data[HEADER + size:]


def answer(code: int, stdout: str) -> bytes:
    return str(code).encode() + stdout.encode()


def read_answer(data: bytes) -> tuple[int, bytes] | None:
    """(exit code, stdout) of an answer; None for "do it yourself" or no answer at all."""
    if data[:1] in (b"0", b"1"):
        return int(data[:1]), data[1:]
    return None
