"""CHECK: the attachment in prevResult still exists as ADD made it."""

from __future__ import annotations

import os

from ..core.attachment import Attachment
from ..core.errors import CHECK_FAILED, INVALID_NETWORK_CONFIG, CNIError
from ..core.netconf import NetConf
from ..core.result import from_json
from ..core.skel import Invocation
from ..io import link, masq, netns
from ..io.records import RecordStore
from ..io.store import IPStore, StateDir


def _fail(msg: str, details: str = "") -> CNIError:
    return CNIError(CHECK_FAILED, msg, details)


def run(inv: Invocation, conf: NetConf) -> None:
    if conf.prev_result is None:
        raise CNIError(INVALID_NETWORK_CONFIG, "required prevResult missing")
    prev = from_json(conf.prev_result)
    owner = Attachment(inv.container_id, inv.ifname)
    state = StateDir(conf.data_dir, conf.name)
    records = RecordStore(state)
    record = records.read(owner)
    if record is None:
        raise _fail(f"no attachment record for {inv.container_id}/{inv.ifname}",
                    f"looked in {records.dir}")
    if IPStore(state).reservations().get(record.address.ip) != owner:
        raise _fail(f"IP {record.address.ip} is not reserved for {inv.container_id}")
    pod_iface = next((i for i in prev.interfaces if i.name == inv.ifname and i.sandbox), None)
    if pod_iface is None:
        raise _fail(f"prevResult lists no interface {inv.ifname} in a sandbox")
    if pod_iface.sandbox != inv.netns:
        raise _fail(f"interface {inv.ifname} is in sandbox {pod_iface.sandbox}, "
                    f"not {inv.netns}")
    pod_fd = netns.open_netns(inv.netns)
    try:
        pod = link.pod_socket(pod_fd, inv.netns)
    finally:
        os.close(pod_fd)
    pod_link = link.find(pod, inv.ifname)
    if pod_link is None or pod_link.kind != "veth":
        raise _fail(f"veth {inv.ifname} not found in netns {inv.netns}")
    if pod_iface.mac and pod_iface.mac.lower() != pod_link.mac.lower():
        raise _fail(f"{inv.ifname} has MAC {pod_link.mac}, prevResult says {pod_iface.mac}")
    have = set(link.addresses(pod, pod_link.index))
    for ip in prev.ips:
        if ip.address not in have:
            raise _fail(f"{inv.ifname} lacks address {ip.address}")
    have_routes = set(link.routes(pod, pod_link.index))
    for route in prev.routes:
        if route not in have_routes:
            raise _fail(f"{inv.ifname} lacks route {route.dst} via {route.gw}")
    _check_host(record.host_veth, record.bridge, pod_link.index)
    if record.masq_chain and not masq.present(record.masq_chain, record.address.ip):
        raise _fail(f"masquerade chain {record.masq_chain} for {record.address.ip} is missing")


def _check_host(host_veth: str, bridge_name: str, pod_index: int) -> None:
    host = link.Netlink()
    bridge = link.find(host, bridge_name)
    if bridge is None or bridge.kind != "bridge":
        raise _fail(f"bridge {bridge_name} not found")
    veth = link.find(host, host_veth)
    if veth is None or veth.kind != "veth" or veth.peer_index != pod_index:
        raise _fail(f"host veth {host_veth} paired with the pod interface not found")
    if veth.master != bridge.index:
        raise _fail(f"host veth {host_veth} is not attached to bridge {bridge_name}")
