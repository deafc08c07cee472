"""Loading the subnet file that flanneld writes."""

from __future__ import annotations

from ..core import subnet_env
from ..core.errors import IO_FAILURE, TRY_AGAIN_LATER, CNIError


def load(path: str) -> subnet_env.SubnetEnv:
    """Code 11 while the file is not there yet (flanneld has not written it)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise CNIError(TRY_AGAIN_LATER, f"subnet file {path} does not exist yet",
                       "is flanneld running on this node?") from None
    except OSError as e:
        raise CNIError(IO_FAILURE, f"cannot read subnet file {path}", e.strerror) from None
    return subnet_env.parse(text, path)
