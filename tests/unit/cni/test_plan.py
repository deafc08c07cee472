"""cni.core.plan: names derived from the attachment, and what ADD builds and reports."""

from __future__ import annotations

import dataclasses
import json
import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from cni.core import netconf, plan, subnet_env
from cni.core.attachment import Attachment
from cni.core.errors import CNIError
from cni.core.netconf import NetConf
from cni.core.requested import Requested
from cni.core.result import Interface, IPConfig, Result, Route
from cni.core.subnet_env import SubnetEnv

OWNER = Attachment("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "eth0")
ENV = subnet_env.parse("FLANNEL_NETWORK=10.1.0.0/16,10.9.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\n"
                       "FLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n")
OWNERS = [OWNER, Attachment("a", "b"), Attachment("ctr-1.x_y", "net1"),
          Attachment("ctr", "x" * 15), Attachment("0" * 200, "eth0")]


def conf(**changes: object) -> NetConf:
    return netconf.parse(json.dumps({"cniVersion": "1.1.0", "name": "podnet", **changes}))


@pytest.mark.parametrize("owner", OWNERS)
def test_names_are_deterministic_and_fit_the_kernel(owner: Attachment) -> None:
    veth, chain = plan.host_veth_name("podnet", owner), plan.masq_chain_name("podnet", owner)
    assert re.fullmatch(r"veth[0-9a-f]{8}", veth) and len(veth) <= 15
    assert re.fullmatch(r"PYFL-[0-9a-f]{23}", chain) and len(chain) == 28   # iptables max: 28
    assert (veth, chain) == (plan.host_veth_name("podnet", owner),
                             plan.masq_chain_name("podnet", owner))


def test_names_differ_by_network_container_and_ifname() -> None:
    keys = [("podnet", OWNER), ("other", OWNER), ("podnet", Attachment(OWNER.container_id, "eth1")),
            ("podnet", Attachment("ctr", "eth0")),
            # the triple is NUL-separated, so shifting characters between fields changes it
            ("a", Attachment("bc", "eth0")), ("ab", Attachment("c", "eth0"))]
    assert len({plan.host_veth_name(n, o) for n, o in keys}) == len(keys)
    assert len({plan.masq_chain_name(n, o) for n, o in keys}) == len(keys)


@pytest.mark.parametrize("owner", OWNERS)
@pytest.mark.parametrize("network", ["podnet", "a", "cbr0.v2-x_y"])
def test_alias_round_trips(network: str, owner: Attachment) -> None:
    alias = plan.host_veth_alias(network, owner)
    assert alias == f"pyflannel:{network}:{owner.container_id}:{owner.ifname}"
    assert plan.is_network_alias(alias, network)


@pytest.mark.parametrize("length", [200, 240, 300, 5000])
def test_long_ids_and_names_get_a_digest_alias_the_kernel_takes(length: int) -> None:
    network, owner = "n" * (length // 2), Attachment("c" * length, "eth0")
    alias = plan.host_veth_alias(network, owner)
    assert len(alias.encode()) <= plan.ALIAS_LIMIT
    assert plan.is_network_alias(alias, network)
    assert not plan.is_network_alias(alias, network + "x")
    assert alias != plan.host_veth_alias(network, Attachment("c" * length, "eth1"))
    assert len(plan.masq_comment(network, owner)) <= 200


@pytest.mark.parametrize("alias", [
    "", "pyflannel", "pyflannel:podnet",
    "pyflannel:other:ctr:eth0", "pyflannel:podnet2:ctr:eth0", "pyflannel:pod:ctr:eth0",
    plan.host_veth_alias("podnet2", Attachment("c" * 300, "eth0")),
    "cni:podnet:ctr:eth0", "PYFLANNEL:podnet:ctr:eth0", "some operator's note",
])
def test_foreign_alias_is_not_ours(alias: str) -> None:
    assert not plan.is_network_alias(alias, "podnet")


GW = IPv4Address("10.1.17.1")


@pytest.mark.parametrize(("is_default_gateway", "routes"), [
    (True, (Route(IPv4Network("0.0.0.0/0"), GW),)),
    (False, (Route(IPv4Network("10.1.0.0/16"), GW), Route(IPv4Network("10.9.0.0/16"), GW))),
])
def test_routes(is_default_gateway: bool, routes: tuple[Route, ...]) -> None:
    assert plan.plan_add(conf(isDefaultGateway=is_default_gateway), ENV, OWNER).routes == routes


def test_a_network_the_node_subnet_covers_gets_no_route_of_its_own() -> None:
    env = dataclasses.replace(ENV, networks=(IPv4Network("10.1.17.0/24"),
                                             IPv4Network("10.9.0.0/16")))
    assert plan.plan_add(conf(isDefaultGateway=False), env, OWNER).routes == (
        Route(IPv4Network("10.9.0.0/16"), GW),)


@pytest.mark.parametrize(("flannel_ipmasq", "ip_masq", "masquerades"), [
    (True, None, False),      # flanneld masquerades already
    (False, None, True),
    (True, True, True),
    (False, False, False),
    (True, False, False),
    (False, True, True),
])
def test_masquerading(flannel_ipmasq: bool, ip_masq: bool | None, masquerades: bool) -> None:
    env = SubnetEnv(ENV.networks, ENV.subnet, ENV.gateway, ENV.mtu, flannel_ipmasq)
    p = plan.plan_add(conf(ipMasq=ip_masq), env, OWNER)
    assert p.masq_chain == (plan.masq_chain_name("podnet", OWNER) if masquerades else None)
    assert p.networks == ENV.networks


@pytest.mark.parametrize(("mtu", "expected"), [(None, 1472), (0, 1472), (1400, 1400),
                                               (9000, 9000)])
def test_mtu_from_conf_overrides_the_subnet_file(mtu: int | None, expected: int) -> None:
    assert plan.plan_add(conf(mtu=mtu), ENV, OWNER).mtu == expected


def test_plan_add() -> None:
    p = plan.plan_add(conf(bridge="br-pods", hairpinMode=False), ENV, OWNER)
    assert p == plan.AddPlan(
        owner=OWNER, bridge="br-pods", gateway=IPv4Interface("10.1.17.1/24"), mtu=1472,
        host_veth=plan.host_veth_name("podnet", OWNER),
        host_alias=plan.host_veth_alias("podnet", OWNER), hairpin=False,
        routes=(Route(IPv4Network("0.0.0.0/0"), GW),), masq_chain=None, networks=ENV.networks,
        masq_comment=plan.masq_comment("podnet", OWNER), requested=Requested())
    assert p.pod_address(IPv4Address("10.1.17.5")) == IPv4Interface("10.1.17.5/24")


def test_requests_from_cni_args_args_and_runtime_config_are_merged() -> None:
    c = conf(args={"cni": {"ips": ["10.1.17.9/24"], "mac": "02:00:00:00:00:01"}},
             runtimeConfig={"ips": ["10.1.17.9"], "mac": "02-00-00-00-00-AB"})
    p = plan.plan_add(c, ENV, OWNER, {"IP": "10.1.17.9", "MAC": "02:00:00:00:00:02"})
    assert p.requested == Requested(IPv4Address("10.1.17.9"), "CNI_ARGS IP",
                                    "02:00:00:00:00:ab")


@pytest.mark.parametrize(("args", "extra", "code", "culprit"), [
    ({"IP": "10.1.17.9"}, {"runtimeConfig": {"ips": ["10.1.17.8/24"]}}, 7, "runtimeConfig.ips"),
    ({"IP": "10.1.17.9,10.1.17.10"}, {}, 4, "CNI_ARGS IP"),
    ({"IP": "nonsense"}, {}, 4, "CNI_ARGS IP"),
    ({"IP": "fd00::5"}, {}, 4, "CNI_ARGS IP"),
    ({"MAC": "01:00:5e:00:00:01"}, {}, 4, "CNI_ARGS MAC"),
    ({}, {"runtimeConfig": {"mac": "00:00:00:00:00:00"}}, 7, "runtimeConfig.mac"),
    ({}, {"args": {"cni": {"mac": "02:00:00:00:00"}}}, 7, "args.cni.mac"),
])
def test_bad_requests_are_refused_naming_their_source(args: dict, extra: dict, code: int,
                                                       culprit: str) -> None:
    with pytest.raises(CNIError) as e:
        plan.plan_add(conf(**extra), ENV, OWNER, args)
    assert e.value.code == code
    assert culprit in e.value.msg + e.value.details


def test_add_result_shape() -> None:
    p = plan.plan_add(conf(), ENV, OWNER)
    built = plan.Built("aa:00:00:00:00:01", "aa:00:00:00:00:02", "aa:00:00:00:00:03")
    dns = {"nameservers": ["10.96.0.10"]}
    result = plan.add_result(p, IPv4Address("10.1.17.5"), built, "/run/netns/pod", dns)
    assert result == Result(
        interfaces=(Interface("cni0", "aa:00:00:00:00:01"),
                    Interface(p.host_veth, "aa:00:00:00:00:02"),
                    Interface("eth0", "aa:00:00:00:00:03", sandbox="/run/netns/pod", mtu=1472)),
        ips=(IPConfig(IPv4Interface("10.1.17.5/24"), GW, interface=2),),
        routes=(Route(IPv4Network("0.0.0.0/0"), GW),),
        dns=dns,
    )
    assert result.interfaces[result.ips[0].interface].name == OWNER.ifname


@pytest.mark.parametrize("found, stale", [
    ([], []),
    (["10.1.17.1/24"], []),                                   # the gateway itself
    (["10.1.17.1/24", "192.0.2.1/24"], []),                   # outside the cluster: not ours
    (["10.1.17.9/24"], ["10.1.17.9/24"]),                     # another address, same subnet
    (["10.1.17.1/24", "10.1.40.1/24"], ["10.1.40.1/24"]),     # an earlier node subnet
    (["10.9.3.1/24"], ["10.9.3.1/24"]),                       # the second cluster network
    (["10.0.0.1/8"], ["10.0.0.1/8"]),                         # covers the cluster network
])
def test_stale_bridge_addresses(found: list[str], stale: list[str]) -> None:
    gateway = IPv4Interface("10.1.17.1/24")
    assert plan.stale_bridge_addresses([IPv4Interface(a) for a in found], gateway,
                                       ENV.networks) == [IPv4Interface(a) for a in stale]
