"""DEL: undo ADD; everything already gone (netns, veth, reservation, record) is success."""

from __future__ import annotations

from ..core.ipam import release
from ..core.netconf import Attachment, NetConf
from ..core.plan import host_veth_alias, host_veth_name, masq_chain_name
from ..core.skel import Invocation
from ..io import link, masq
from ..io.store import DiskStore


def run(inv: Invocation, conf: NetConf) -> None:
    owner = Attachment(inv.container_id, inv.ifname)
    store = DiskStore(conf.data_dir, conf.name)
    alias = host_veth_alias(conf.name, owner)
    if not store.exists():
        # Nothing was ever reserved here; still remove a veth a crashed ADD may have left.
        link.delete_host_veth(link.IPRoute(), host_veth_name(conf.name, owner), alias)
        return None
    record = store.read_record(owner)
    link.delete_host_veth(link.IPRoute(),
                          record.host_veth if record else host_veth_name(conf.name, owner),
                          alias)
    if record is not None:
        chain = record.masq_chain
    else:
        chain = masq_chain_name(conf.name, owner) if conf.ip_masq is not False else None
    if chain:
        masq.teardown(chain)
    with store.locked():
        release(store, owner)
        store.remove_record(owner)
    return None
