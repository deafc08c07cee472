"""cni.core.result: the ADD result in each spec version's shape, and prevResult read back."""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni.core import version
from cni.core.errors import DECODING_FAILURE, CNIError
from cni.core.result import Interface, IPConfig, Result, Route, from_json

RESULT = Result(
    interfaces=(Interface("cni0", "aa:aa:aa:aa:aa:01"),
                Interface("veth1234abcd", "aa:aa:aa:aa:aa:02"),
                Interface("eth0", "aa:aa:aa:aa:aa:03", sandbox="/run/netns/x", mtu=1450)),
    ips=(IPConfig(IPv4Interface("10.1.17.2/24"), IPv4Address("10.1.17.1"), 2),),
    routes=(Route(IPv4Network("0.0.0.0/0"), IPv4Address("10.1.17.1")),),
    dns={"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
)


def expected_json(cni_version: str) -> dict[str, Any]:
    old = cni_version.startswith("0.")
    pod: dict[str, Any] = {"name": "eth0", "mac": "aa:aa:aa:aa:aa:03"}
    if cni_version == "1.1.0":
        pod["mtu"] = 1450
    pod["sandbox"] = "/run/netns/x"
    return {
        "cniVersion": cni_version,
        "interfaces": [{"name": "cni0", "mac": "aa:aa:aa:aa:aa:01"},
                       {"name": "veth1234abcd", "mac": "aa:aa:aa:aa:aa:02"}, pod],
        "ips": [{**({"version": "4"} if old else {}), "address": "10.1.17.2/24",
                 "gateway": "10.1.17.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.17.1"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
    }


@pytest.mark.parametrize("cni_version", version.SUPPORTED)
def test_to_json_per_version(cni_version: str) -> None:
    out = RESULT.to_json(cni_version)
    assert out == expected_json(cni_version)
    assert [i for i in out["interfaces"] if "sandbox" in i] == [out["interfaces"][2]]


def test_to_json_of_an_empty_result() -> None:
    assert Result().to_json("1.0.0") == {"cniVersion": "1.0.0", "ips": [], "dns": {}}


def test_to_json_omits_unset_fields() -> None:
    result = Result(interfaces=(Interface("eth0"),), ips=(IPConfig(IPv4Interface("10.0.0.2/8")),),
                    routes=(Route(IPv4Network("10.0.0.0/8")),))
    assert result.to_json("1.1.0") == {
        "cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}],
        "ips": [{"address": "10.0.0.2/8"}], "routes": [{"dst": "10.0.0.0/8"}], "dns": {}}


@pytest.mark.parametrize("cni_version", version.SUPPORTED)
def test_from_json_reads_each_versions_shape(cni_version: str) -> None:
    assert from_json(expected_json(cni_version)) == dataclasses.replace(
        RESULT, interfaces=without_mtu(RESULT.interfaces, cni_version))


def test_from_json_reads_the_0_3_0_ip_key() -> None:
    raw = expected_json("0.3.0")
    raw["ip"] = raw.pop("ips")
    assert from_json(raw).ips == RESULT.ips


def test_from_json_drops_ipv6_entries() -> None:
    raw = expected_json("1.1.0")
    raw["ips"].insert(0, {"address": "fd00::2/64", "gateway": "fd00::1", "interface": 2})
    raw["ips"].append({"version": "6", "address": "2001:db8::5/64"})
    raw["routes"].append({"dst": "::/0", "gw": "fd00::1"})
    assert from_json(raw) == RESULT


def test_from_json_of_an_abbreviated_ipam_result() -> None:
    raw = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.17.9/24"}], "dns": None}
    assert from_json(raw) == Result(ips=(IPConfig(IPv4Interface("10.1.17.9/24")),))


@pytest.mark.parametrize("raw", [
    [], "text", None,
    {"interfaces": [{"mac": "aa:aa:aa:aa:aa:01"}]},
    {"interfaces": ["eth0"]},
    {"interfaces": [{"name": "eth0", "mtu": "big"}]},
    {"ips": [{"gateway": "10.0.0.1"}]},
    {"ips": [{"address": "10.0.0.300/24"}]},
    {"ips": ["10.0.0.2/24"]},
    {"ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.x"}]},
    {"routes": [{"gw": "10.0.0.1"}]},
    {"routes": [{"dst": "10.0.0.1/8"}]},
    {"routes": [{"dst": 0}]},
    {"routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]},
    {"ips": [{"address": "10.0.0.2/24", "gateway": "fd00::1"}]},
    {"ips": [{"address": "10.0.0.2/24", "interface": "2"}]},
    {"ips": [{"address": 5}]},
    {"interfaces": {"name": "eth0"}},
    {"interfaces": [{"name": "eth0", "mac": 5}]},
    {"interfaces": [{"name": "eth0", "sandbox": ["/x"]}]},
    {"interfaces": [{"name": "eth0", "mtu": -1}]},
    {"interfaces": [{"name": "eth0", "mtu": True}]},
    {"ips": {"address": "10.0.0.2/24"}},
    {"ips": [{"address": "10.0.0.2/24", "interface": -1}]},
    {"ips": [{"address": "10.0.0.2/24", "gateway": 7}]},
    {"routes": "0.0.0.0/0"},
    {"routes": [{"dst": "0.0.0.0/0", "gw": {"a": 1}}]},
    {"routes": [{"dst": ["0.0.0.0/0"]}]},
])
def test_from_json_rejects_garbage_with_code_6(raw: Any) -> None:
    with pytest.raises(CNIError) as e:
        from_json(raw)
    assert (e.value.code, e.value.msg) == (DECODING_FAILURE, "cannot decode prevResult")


# --- property: every result survives to_json -> JSON text -> from_json ------------------

def without_mtu(interfaces: tuple[Interface, ...], cni_version: str) -> tuple[Interface, ...]:
    """Interface MTUs exist in results from 1.1.0 on only."""
    if version.at_least(cni_version, "1.1.0"):
        return interfaces
    return tuple(dataclasses.replace(i, mtu=0) for i in interfaces)


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=15)
addresses = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
interfaces = st.builds(Interface, names.filter(bool), names, names, st.integers(0, 65535))
ip_configs = st.builds(
    IPConfig, st.builds(lambda a, p: IPv4Interface((a, p)), addresses, st.integers(0, 32)),
    st.none() | addresses, st.none() | st.integers(0, 8))
routes = st.builds(Route, st.builds(lambda a, p: IPv4Network((a, p), strict=False),
                                    addresses, st.integers(0, 32)), st.none() | addresses)
dns = st.fixed_dictionaries({}, optional={
    "nameservers": st.lists(addresses.map(str), max_size=3), "domain": names,
    "search": st.lists(names, max_size=3), "options": st.lists(names, max_size=3)})
results = st.builds(Result, st.lists(interfaces, max_size=4).map(tuple),
                    st.lists(ip_configs, max_size=4).map(tuple),
                    st.lists(routes, max_size=4).map(tuple), dns)


@settings(max_examples=300, deadline=None)
@given(results, st.sampled_from(version.SUPPORTED))
def test_results_round_trip_through_json(result: Result, cni_version: str) -> None:
    text = json.dumps(result.to_json(cni_version))
    assert from_json(json.loads(text)) == dataclasses.replace(
        result, interfaces=without_mtu(result.interfaces, cni_version))
