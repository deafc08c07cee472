"""Reading the subnet file that flanneld writes; `core.subnet_env` parses the text."""

from __future__ import annotations

from ..core import subnet_env
from ..core.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, TRY_AGAIN_LATER, CNIError
from . import files

LIMIT = 64 << 10     # flanneld writes about 100 bytes


def load(path: str) -> subnet_env.SubnetEnv:
    """Code 11 while the file is not there yet (flanneld has not written it); 7 when it is
    not a regular file of at most LIMIT bytes of UTF-8 (a FIFO, /dev/zero...)."""
    try:
        data = files.read_bytes(path, LIMIT)
    except FileNotFoundError:
        raise CNIError(TRY_AGAIN_LATER, f"subnet file {path} does not exist yet",
                       "is flanneld running on this node?") from None
    except files.NotRegular as e:
        raise CNIError(INVALID_NETWORK_CONFIG, f"invalid subnet file {path}", str(e)) from None
    except OSError as e:
        raise CNIError(IO_FAILURE, f"cannot read subnet file {path}",
                       e.strerror or str(e)) from None
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise CNIError(INVALID_NETWORK_CONFIG, f"invalid subnet file {path}",
                       f"not UTF-8: {e}") from None
    return subnet_env.parse(text, path)
