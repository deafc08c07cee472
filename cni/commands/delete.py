"""DEL: undo ADD; everything already gone (netns, veth, reservation, record) is success."""

from __future__ import annotations

from ..core.attachment import Attachment
from ..core.ipam import release
from ..core.netconf import NetConf
from ..core.plan import host_veth_alias, host_veth_name, masq_chain_name
from ..core.skel import Invocation
from ..io import link, masq
from ..io.records import RecordStore
from ..io.store import IPStore, StateDir


def run(inv: Invocation, conf: NetConf) -> None:
    owner = Attachment(inv.container_id, inv.ifname)
    state = StateDir(conf.data_dir, conf.name)
    records = RecordStore(state)
    alias = host_veth_alias(conf.name, owner)
    if not state.exists():
        # Nothing was ever reserved here; still remove a veth a crashed ADD may have left.
        link.delete_host_veth(link.Netlink(), host_veth_name(conf.name, owner), alias)
        return None
    record = records.read(owner)
    link.delete_host_veth(link.Netlink(),
                          record.host_veth if record else host_veth_name(conf.name, owner),
                          alias)
    if record is not None:
        chain = record.masq_chain
    else:
        chain = masq_chain_name(conf.name, owner) if conf.ip_masq is not False else None
    if chain:
        masq.teardown(chain)
    with state.locked():
        release(IPStore(state), owner)
        records.remove(owner)
    return None
