"""One CNI call, cold or in the daemon's worker: the environment and config checked, the
command run under the call's deadline, its answer (result or error JSON) handed on."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, BinaryIO

from .core import netconf, version
from .core.errors import (
    DECODING_FAILURE,
    INTERNAL,
    INVALID_ENVIRONMENT,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    CNIError,
)
from .core.netconf import NetConf
from .core.skel import parse_environment

Emit = Callable[[int, str], None]     # (exit code, output): where the answer goes


class Declined(Exception):
    """The worker may not do this call (see `execute`'s `here`); nothing was done."""


def json_line(obj: dict[str, Any]) -> str:
    """The answer as the runtime reads it: one JSON object and a newline."""
    return json.dumps(obj) + "\n"


def to_stdout(code: int, text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# CNI command -> module under cni.commands (imported only when run).
MODULES = {"ADD": "add", "DEL": "delete", "CHECK": "check", "STATUS": "status", "GC": "gc"}
CONFIG_LIMIT = 4 << 20      # bytes of stdin: a GC list of every pod on a node fits easily
DEFAULT_TIMEOUT = 60.0      # seconds; PYFLANNEL_TIMEOUT
GRACE = 5.0                 # seconds the rollback may take past the timeout


def _timeout(env: Mapping[str, str]) -> float:
    text = env.get("PYFLANNEL_TIMEOUT", "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise CNIError(INVALID_ENVIRONMENT, "invalid PYFLANNEL_TIMEOUT",
                       f"{text[:40]!r} is not a number of seconds in (0, 3600]")
    return seconds


def _arm_deadline(seconds: float, reply: list[str], emit: Emit) -> None:
    """Past `seconds` the call fails with code 11 wherever it is (a blocking read, a lock
    held by a stuck process): the exception unwinds through ADD's rollback. Should even
    that hang, the error is written GRACE seconds later and the process exits."""
    def expire(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGALRM, give_up)
        signal.setitimer(signal.ITIMER_REAL, GRACE)
        where = f" (in {frame.f_code.co_name})" if frame is not None else ""
        raise CNIError(TRY_AGAIN_LATER, f"pyflannel gave up after {seconds:g} s{where}",
                       "set PYFLANNEL_TIMEOUT for a longer bound")

    def give_up(signum: int, frame: FrameType | None) -> None:
        emit(1, json_line(CNIError(TRY_AGAIN_LATER, f"pyflannel gave up after "
                               f"{seconds + GRACE:g} s", "the rollback did not finish")
                      .to_dict(reply[0])))
        os._exit(1)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _read_config(stdin: BinaryIO) -> bytes:
    data = stdin.read(CONFIG_LIMIT + 1)
    if len(data) > CONFIG_LIMIT:
        raise CNIError(DECODING_FAILURE, "error parsing network config",
                       f"more than {CONFIG_LIMIT} bytes on stdin")
    return data


def execute(env: Mapping[str, str], stdin: BinaryIO, emit: Emit,
            here: Callable[[NetConf], bool] | None = None) -> int:
    """Run the call `env` and the config on `stdin` ask for, hand its output to `emit`
    (once) and return the exit code. `here`, when given, is asked once the config is
    known whether this process may do the call; when it says no, nothing is done and
    Declined is raised."""
    reply = [version.CURRENT]     # the version errors are given in, once the config says
    try:
        _arm_deadline(_timeout(env), reply, emit)
        inv = parse_environment(env)
        data = _read_config(stdin)
        raw = netconf.decode(data)
        if netconf.cni_version_of(raw) in version.SUPPORTED:
            reply[0] = netconf.cni_version_of(raw)
        conf = netconf.parse(data)
        version.require_command_allowed(inv.command, conf.cni_version)
        if here is not None and not here(conf):
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise Declined(conf.name)
        module = importlib.import_module(f"cni.commands.{MODULES[inv.command]}")
        out = module.run(inv, conf)
        signal.setitimer(signal.ITIMER_REAL, 0)
        emit(0, json_line(out) if out is not None else "")
        return 0
    except Declined:
        raise
    except CNIError as e:
        error = e
    except OSError as e:
        error = CNIError(IO_FAILURE, f"I/O failure: {e.strerror or e}", str(e.filename or ""))
    except MemoryError:
        error = CNIError(IO_FAILURE, "out of memory", "an input is too large")
    except Exception as e:  # noqa: BLE001 - every failure must reach the runtime as JSON
        import traceback  # here: loaded only for a bug (about 2 ms of every call otherwise)
        traceback.print_exc(file=sys.stderr)
        error = CNIError(INTERNAL, f"internal error: {type(e).__name__}: {e}")
    signal.setitimer(signal.ITIMER_REAL, 0)
    emit(1, json_line(error.to_dict(reply[0])))
    return 1


