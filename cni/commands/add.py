"""ADD: reserve an IP, build bridge + veth + addresses + routes (+ masquerade), answer."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..core.attachment import Attachment, Record
from ..core.ipam import allocate, release
from ..core.netconf import NetConf
from ..core.plan import Built, add_result, plan_add
from ..core.skel import Invocation
from ..io import link, masq, netns, subnet_file
from ..io.records import RecordStore
from ..io.store import IPStore, StateDir


def run(inv: Invocation, conf: NetConf) -> dict[str, Any]:
    env = subnet_file.load(conf.subnet_file)
    owner = Attachment(inv.container_id, inv.ifname)
    plan = plan_add(conf, env, owner, inv.args)
    pod_fd = netns.open_netns(inv.netns)
    state = StateDir(conf.data_dir, conf.name)
    ips, records = IPStore(state), RecordStore(state)
    undo: list[Callable[[], object]] = []
    try:
        with state.locked():
            ip = allocate(ips, env.subnet, env.gateway, owner, plan.requested)
            undo.append(lambda: _release(state, owner))
            records.write(Record(owner, inv.netns, plan.pod_address(ip), plan.host_veth,
                                 plan.bridge, plan.masq_chain))
        host = link.Netlink()
        pod = link.pod_socket(pod_fd, inv.netns)
        bridge = link.ensure_bridge(host, plan.bridge, plan.mtu, plan.gateway, plan.networks)
        link.enable_forwarding()
        link.forget_neighbour(host, bridge, ip)
        # The record names the host veth before it exists: DEL and GC find it from now on.
        host_end, pod_end = link.add_veth(host, pod, pod_fd, host_name=plan.host_veth,
                                          pod_name=inv.ifname, mtu=plan.mtu,
                                          pod_mac=plan.requested.mac)
        undo.append(lambda: link.delete(host, plan.host_veth))
        link.attach_host_end(host, host_end, bridge, hairpin=plan.hairpin,
                             alias=plan.host_alias)
        link.configure_pod(pod, pod_end, plan.pod_address(ip), plan.routes)
        link.announce(host, host_end, pod_fd, pod_end, ip)
        chain = plan.masq_chain
        if chain:
            undo.append(lambda: masq.teardown(chain))
            masq.setup(chain, ip, plan.networks, plan.masq_comment)
        built = Built(bridge.mac, host_end.mac, pod_end.mac)
        return add_result(plan, ip, built, inv.netns, conf.dns).to_json(conf.cni_version)
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # noqa: BLE001 - rollback goes on; the first error is reported
                pass
        raise
    finally:
        os.close(pod_fd)


def _release(state: StateDir, owner: Attachment) -> None:
    with state.locked():
        release(IPStore(state), owner)
        RecordStore(state).remove(owner)
