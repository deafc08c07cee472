"""A requested IP and MAC (podman run --ip/--mac-address, CNI_ARGS, the capabilities `ips`
and `mac`), and a recycled IP that must answer at once."""

from __future__ import annotations

import json

import pytest

from lab.netns import run
from lab.plugin import invoke, links

from .attachments import add, assert_nothing_left, delete, node_links, reservations

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cni_executable")]


def pod_eth0(pod: str) -> dict:
    return next(link for link in links(pod) if link["ifname"] == "eth0")


def answers_within_a_second(netns: str, ip: str) -> bool:
    """One echo request, one second to answer: no time for a stale neighbour to expire."""
    return run("ping", "-c", "1", "-W", "1", ip, netns=netns, check=False).returncode == 0


def test_a_recycled_ip_answers_the_node_and_its_pods_at_once(node, namespaces):
    """Round-robin wraps a small subnet and hands out a freed IP again while another pod
    keeps cni0 up: the node and the other pod still hold the old pod's MAC for it."""
    node.write_subnet_file(subnet="10.244.1.1/29")   # .2 to .6 are allocatable
    keeper, first = namespaces.make("pfpod"), namespaces.make("pfpod")
    assert add(node, namespaces.path(keeper), "keeper").code == 0           # .2
    assert add(node, namespaces.path(first), "first").json["ips"][0]["address"] \
        == "10.244.1.3/29"
    assert answers_within_a_second(node.netns, "10.244.1.3")
    assert answers_within_a_second(keeper, "10.244.1.3")
    assert delete(node, namespaces.path(first), "first").code == 0
    for i in range(3):                                                      # .4, .5, .6
        assert add(node, namespaces.path(namespaces.make("pfpod")), f"fill{i}").code == 0
    recycled = namespaces.make("pfpod")
    out = add(node, namespaces.path(recycled), "recycled")
    assert out.json["ips"][0]["address"] == "10.244.1.3/29"
    assert answers_within_a_second(node.netns, "10.244.1.3")
    assert answers_within_a_second(keeper, "10.244.1.3")
    assert answers_within_a_second(recycled, "10.244.1.1")


SOURCES = {
    "CNI_ARGS": lambda ip, mac: ({"CNI_ARGS": f"IgnoreUnknown=1;IP={ip};MAC={mac}"}, {}),
    "args": lambda ip, mac: ({}, {"args": {"cni": {"ips": [ip], "mac": mac}}}),
    "runtimeConfig": lambda ip, mac: ({}, {"capabilities": {"ips": True, "mac": True},
                                           "runtimeConfig": {"ips": [f"{ip}/24"], "mac": mac}}),
}


@pytest.mark.parametrize("source", SOURCES)
def test_the_requested_ip_and_mac_are_given_and_kept_across_a_reload(source, node, namespaces):
    pod = namespaces.make("pfpod")
    env, conf = SOURCES[source]("10.244.1.77", "02:11:22:33:44:55")
    out = add(node, namespaces.path(pod), "c1", env=env, **conf)
    assert out.code == 0, out.stdout
    result = out.json
    assert result["ips"][0]["address"] == "10.244.1.77/24"
    assert result["interfaces"][2]["mac"] == "02:11:22:33:44:55"
    assert pod_eth0(pod)["address"] == "02:11:22:33:44:55"
    assert reservations(node) == ["10.244.1.77"]
    check = invoke("CHECK", node.conf(prevResult=result, **conf), node=node.netns,
                   container_id="c1", netns=namespaces.path(pod), extra_env=env)
    assert check.code == 0, check.stdout
    # `podman network reload`: DEL then ADD with the same request gives the same addresses.
    assert delete(node, namespaces.path(pod), "c1").code == 0
    again = add(node, namespaces.path(pod), "c1", env=env, **conf).json
    assert again["ips"] == result["ips"] and again["interfaces"][2] == result["interfaces"][2]
    assert answers_within_a_second(node.netns, "10.244.1.77")
    # The round-robin position did not move: the next pod without a request gets .2.
    other = add(node, namespaces.path(namespaces.make("pfpod")), "c2").json
    assert other["ips"][0]["address"] == "10.244.1.2/24"


@pytest.mark.parametrize(("request_env", "code", "words"), [
    ("IP=10.245.0.5", 4, "outside this node's subnet 10.244.1.0/24"),
    ("IP=10.244.1.1", 4, "is the gateway"),
    ("IP=10.244.1.255", 4, "broadcast"),
    ("IP=10.244.1.2", 101, "already allocated"),
    ("IP=10.244.1.300", 4, "not an IP address"),
    ("IP=10.244.1.8,10.244.1.9", 4, "more than one IP"),
    ("MAC=ff:ff:ff:ff:ff:ff", 4, "multicast"),
    ("MAC=zz:11:22:33:44:55", 4, "not a MAC address"),
])
def test_a_request_that_cannot_be_met_is_refused_and_changes_nothing(
        request_env, code, words, node, namespaces):
    holder = namespaces.make("pfpod")
    assert add(node, namespaces.path(holder), "holder").code == 0     # holds 10.244.1.2
    before = (node_links(node), reservations(node))
    pod = namespaces.make("pfpod")
    out = add(node, namespaces.path(pod), "c1", env={"CNI_ARGS": request_env})
    assert out.code == 1 and out.json["code"] == code, out.stdout
    assert words in out.json["msg"] + out.json.get("details", ""), out.stdout
    assert "CNI_ARGS" in out.json["msg"] + out.json.get("details", "")
    assert (node_links(node), reservations(node)) == before
    assert [link["ifname"] for link in links(pod)] == ["lo"]


def test_a_request_in_the_config_that_cannot_be_met_is_code_7(node, namespaces):
    pod = namespaces.make("pfpod")
    out = add(node, namespaces.path(pod), "c1",
              runtimeConfig={"ips": ["10.9.9.9/24"]})
    assert out.json["code"] == 7 and "runtimeConfig.ips" in out.json["msg"], out.stdout
    assert_nothing_left(node, (pod,))


def test_requested_ip_is_never_given_twice_under_concurrency(node, namespaces):
    from concurrent.futures import ThreadPoolExecutor

    pods = [namespaces.make("pfpod") for _ in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outs = list(pool.map(lambda p: add(node, namespaces.path(p[1]), f"c{p[0]}",
                                           env={"CNI_ARGS": "IP=10.244.1.50"}),
                             enumerate(pods)))
    winners = [o for o in outs if o.code == 0]
    assert len(winners) == 1, [json.loads(o.stdout) for o in outs]
    assert all(o.json["code"] == 101 for o in outs if o.code != 0)
    assert reservations(node) == ["10.244.1.50"]
