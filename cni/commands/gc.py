"""GC: release everything of this network not in `cni.dev/valid-attachments`.

What ADD makes is found two ways, so that an ADD killed at any point leaves nothing GC
misses: host veths by their alias, and the veth, chain and IP each record names (the
record is written before any of them exists and removed after all of them are gone).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..core.errors import KERNEL_FAILURE, CNIError
from ..core.ipam import stale
from ..core.netconf import NetConf
from ..core.plan import host_veth_alias, is_network_alias
from ..core.skel import Invocation
from ..io import link, masq
from ..io.records import RecordStore
from ..io.store import IPStore, StateDir


def run(inv: Invocation, conf: NetConf) -> None:
    valid = set(conf.valid_attachments or ())
    valid_aliases = {host_veth_alias(conf.name, owner) for owner in valid}
    state = StateDir(conf.data_dir, conf.name)
    ips, records = IPStore(state), RecordStore(state)
    errors: list[str] = []
    host = link.Netlink()
    for view in link.all_links(host):
        if is_network_alias(view.alias, conf.name) and view.alias not in valid_aliases:
            _attempt(errors, partial(link.delete, host, view.name))
    if not state.exists():
        return _report(errors)
    kept = set(valid)      # and the attachments whose veth or chain could not be removed
    for record in records.all():
        if record.owner in valid:
            continue
        failed = len(errors)
        _attempt(errors, partial(link.delete_host_veth, host, record.host_veth,
                                 host_veth_alias(conf.name, record.owner)))
        if record.masq_chain:
            _attempt(errors, partial(masq.teardown, record.masq_chain))
        if len(errors) > failed:
            kept.add(record.owner)      # its record stays, for the next GC to try again
    with state.locked():
        for record in records.all():
            if record.owner not in kept:
                records.remove(record.owner)
        for ip in stale(ips, kept):
            ips.release(ip)
    return _report(errors)


def _attempt(errors: list[str], step: Callable[[], object]) -> None:
    try:
        step()
    except CNIError as e:
        errors.append(str(e))


def _report(errors: list[str]) -> None:
    if errors:
        raise CNIError(KERNEL_FAILURE, "GC finished with errors", "; ".join(errors))
