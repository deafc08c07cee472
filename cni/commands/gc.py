"""GC: release everything of this network not in `cni.dev/valid-attachments`."""

from __future__ import annotations

from ..core.errors import KERNEL_FAILURE, CNIError
from ..core.ipam import stale
from ..core.netconf import NetConf
from ..core.plan import parse_alias
from ..core.skel import Invocation
from ..io import link, masq
from ..io.store import DiskStore


def run(inv: Invocation, conf: NetConf) -> None:
    valid = set(conf.valid_attachments or ())
    store = DiskStore(conf.data_dir, conf.name)
    errors: list[str] = []
    host = link.IPRoute()
    for view in link.all_links(host):
        owner = parse_alias(view.alias, conf.name)
        if owner is not None and owner not in valid:
            _attempt(errors, lambda v=view: link.delete(host, v.name))
    if store.dir.exists():
        for record in store.all_records():
            if record.owner not in valid and record.masq_chain:
                _attempt(errors, lambda r=record: masq.teardown(r.masq_chain))
        with store.locked():
            for record in store.all_records():
                if record.owner not in valid:
                    store.remove_record(record.owner)
            for ip in stale(store, valid):
                store.release(ip)
    if errors:
        raise CNIError(KERNEL_FAILURE, "GC finished with errors", "; ".join(errors))


def _attempt(errors: list[str], step) -> None:
    try:
        step()
    except CNIError as e:
        errors.append(str(e))
