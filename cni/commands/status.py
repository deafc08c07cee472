"""STATUS: ready for ADD when the subnet file is valid and the subnet has a free IP."""

from __future__ import annotations

from ..core.errors import PLUGIN_NOT_AVAILABLE, CNIError
from ..core.ipam import candidates
from ..core.netconf import NetConf
from ..core.skel import Invocation
from ..io import subnet_file
from ..io.store import IPStore, StateDir


def run(inv: Invocation, conf: NetConf) -> None:
    try:
        env = subnet_file.load(conf.subnet_file)
    except CNIError as e:
        raise CNIError(PLUGIN_NOT_AVAILABLE, e.msg, e.details) from None
    taken = IPStore(StateDir(conf.data_dir, conf.name)).reservations()
    if all(ip in taken for ip in candidates(env.subnet, env.gateway, None)):
        raise CNIError(PLUGIN_NOT_AVAILABLE, f"no free IP left in {env.subnet}",
                       f"{len(taken)} reservations in {conf.data_dir}/{conf.name}")
