"""The `pyflannel` executable, installed and built, run as a runtime runs it, in namespaces
of our own."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.netns import run
from lab.plugin import SPEC_VERSIONS, addresses, invoke, links, ping

from .attachments import (
    add,
    assert_nothing_left,
    delete,
    nat_rules,
    node_links,
    records,
    reservations,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cni_executable")]


@pytest.mark.parametrize("version", SPEC_VERSIONS)
def test_add_check_ping_del_del(version, node, namespaces):
    pods = [namespaces.make("pfpod") for _ in range(2)]
    results = []
    for i, pod in enumerate(pods):
        out = add(node, namespaces.path(pod), f"ctr{i}", version)
        assert out.code == 0, out.stdout + out.stderr
        results.append(out.json)
    first = results[0]
    assert first["cniVersion"] == version
    assert [i["name"] for i in first["interfaces"]][0::2] == ["cni0", "eth0"]
    assert first["interfaces"][2]["sandbox"] == namespaces.path(pods[0])
    ip = first["ips"][0]
    assert ip["address"] == "10.244.1.2/24" and ip["gateway"] == "10.244.1.1"
    assert ip["interface"] == 2
    assert ("version" in ip) == (version in ("0.3.0", "0.3.1", "0.4.0"))
    assert first["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]
    assert addresses(pods[0], "eth0") == ["10.244.1.2/24"]
    assert addresses(node.netns, "cni0") == ["10.244.1.1/24"]

    if version >= "0.4.0":
        for i, pod in enumerate(pods):
            conf = node.conf(version, prevResult=results[i])
            out = invoke("CHECK", conf, node=node.netns, container_id=f"ctr{i}",
                         netns=namespaces.path(pod))
            assert out.code == 0, out.stdout
            assert out.stdout == ""

    assert ping(pods[0], "10.244.1.3")
    assert ping(pods[1], "10.244.1.1")
    assert len(nat_rules(node)) == 8  # two chains of two rules each, two jumps

    for i, pod in enumerate(pods):
        for _ in range(2):
            out = invoke("DEL", node.conf(version, prevResult=results[i]), node=node.netns,
                         container_id=f"ctr{i}", netns=namespaces.path(pod))
            assert out.code == 0, out.stdout
            assert out.stdout == ""
    assert_nothing_left(node)


def test_check_fails_when_the_pod_interface_is_gone(node, namespaces):
    pod = namespaces.make("pfpod")
    result = add(node, namespaces.path(pod), "c1").json
    run("ip", "link", "del", "eth0", netns=pod)
    out = invoke("CHECK", node.conf(prevResult=result), node=node.netns, container_id="c1",
                 netns=namespaces.path(pod))
    assert out.code != 0
    assert "eth0" in out.json["msg"]
    assert delete(node, namespaces.path(pod), "c1").code == 0
    assert_nothing_left(node)


def test_check_fails_without_prev_result(node, namespaces):
    pod = namespaces.make("pfpod")
    assert add(node, namespaces.path(pod), "c1").code == 0
    out = invoke("CHECK", node.conf(), node=node.netns, container_id="c1",
                 netns=namespaces.path(pod))
    assert out.code != 0 and out.json["code"] == 7


@pytest.mark.parametrize("stdin, code", [
    (b"{not json", 6),
    (b"[1, 2]", 6),
    (json.dumps({"cniVersion": "1.0.0", "type": "pyflannel"}), 7),
    (json.dumps({"cniVersion": "0.2.0", "name": "n", "type": "pyflannel"}), 1),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "pyflannel", "mtu": "big"}), 7),
    (json.dumps({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "host-local"}}), 2),
])
def test_bad_config_is_refused_and_changes_nothing(stdin, code, node, namespaces):
    pod = namespaces.make("pfpod")
    out = invoke("ADD", stdin, node=node.netns, container_id="c1",
                 netns=namespaces.path(pod))
    assert out.code != 0
    assert out.json["code"] == code, out.stdout
    assert out.json["msg"]
    assert node_links(node) == {"lo"}
    assert not node.data_dir.exists()


@pytest.mark.parametrize("env, missing", [
    ({"CNI_CONTAINERID": ""}, "CNI_CONTAINERID"),
    ({"CNI_IFNAME": ""}, "CNI_IFNAME"),
    ({"CNI_NETNS": ""}, "CNI_NETNS"),
])
def test_missing_environment_is_code_4(env, missing, node, namespaces):
    pod = namespaces.make("pfpod")
    out = invoke("ADD", node.conf(), node=node.netns, container_id="c1",
                 netns=namespaces.path(pod), extra_env=env)
    assert out.json["code"] == 4 and missing in out.json["msg"]
    assert node_links(node) == {"lo"}


def test_missing_netns_is_code_3_and_reserves_nothing(node):
    out = add(node, "/run/netns/pf-no-such-ns", "c1")
    assert out.json["code"] == 3, out.stdout
    assert_nothing_left(node)


def test_missing_subnet_file_is_try_again_later(node, namespaces):
    node.subnet_file.unlink()
    out = add(node, namespaces.path(namespaces.make("pfpod")), "c1")
    assert out.json["code"] == 11
    assert "subnet file" in out.json["msg"]
    assert node_links(node) == {"lo"}


def test_add_failing_midway_rolls_back(node, namespaces):
    """The pod already has a default route, so ADD fails after the veth and IP exist."""
    pod = namespaces.make("pfpod")
    run("ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1", netns=pod)
    run("ip", "addr", "add", "192.0.2.2/24", "dev", "side0", netns=pod)
    run("ip", "link", "set", "side0", "up", netns=pod)
    run("ip", "route", "add", "default", "via", "192.0.2.1", netns=pod)
    out = add(node, namespaces.path(pod), "c1")
    assert out.code != 0
    assert "route" in out.json["msg"]
    assert {link["ifname"] for link in links(pod)} == {"lo", "side0", "side1"}
    assert_nothing_left(node)
    # The same attachment can be added once the cause is gone.
    run("ip", "route", "del", "default", netns=pod)
    assert add(node, namespaces.path(pod), "c1").code == 0


def test_bridge_left_with_an_earlier_subnet_is_refused(node, namespaces):
    """The node subnet changed (10.244.7.0/24 -> the subnet file's): the old gateway
    address would route 10.244.7.0/24, now another node's, into the bridge."""
    pod = namespaces.make("pfpod")
    run("ip", "link", "add", "cni0", "type", "bridge", netns=node.netns)
    run("ip", "addr", "add", "10.244.7.1/24", "dev", "cni0", netns=node.netns)
    out = add(node, namespaces.path(pod), "c1")
    assert out.code == 1 and out.json["code"] == 101, out.stdout
    assert "10.244.7.1/24" in out.json["details"]
    assert_nothing_left(node)
    assert [link["ifname"] for link in links(pod)] == ["lo"]
    run("ip", "addr", "del", "10.244.7.1/24", "dev", "cni0", netns=node.netns)
    run("ip", "addr", "add", "192.0.2.1/24", "dev", "cni0", netns=node.netns)  # not ours
    assert add(node, namespaces.path(pod), "c1").code == 0


def test_duplicate_add_is_refused_and_keeps_the_first(node, namespaces):
    pod = namespaces.make("pfpod")
    assert add(node, namespaces.path(pod), "c1").code == 0
    again = add(node, namespaces.path(pod), "c1")
    assert again.code != 0
    assert reservations(node) == ["10.244.1.2"]
    assert ping(node.netns, "10.244.1.2")


def test_del_works_without_netns_subnet_file_or_prev_result(node, namespaces):
    pod = namespaces.make("pfpod")
    assert add(node, namespaces.path(pod), "c1", "0.3.1").code == 0
    namespaces.remove(pod)
    node.subnet_file.unlink()
    for _ in range(2):
        out = delete(node, namespaces.path(pod), "c1", "0.3.1")
        assert out.code == 0, out.stdout
    assert_nothing_left(node)


def test_del_of_an_unknown_attachment_succeeds_and_creates_nothing(node):
    out = invoke("DEL", node.conf(), node=node.netns, container_id="never-added", netns="")
    assert out.code == 0, out.stdout
    assert not node.data_dir.exists()


def test_ipmasq_follows_flannel_ipmasq(node, namespaces):
    node.write_subnet_file(ipmasq=True)
    pod = namespaces.make("pfpod")
    assert add(node, namespaces.path(pod), "c1").code == 0
    assert nat_rules(node) == []
    node.write_subnet_file(ipmasq=False)
    pod2 = namespaces.make("pfpod")
    assert add(node, namespaces.path(pod2), "c2", ipMasq=False).code == 0
    assert nat_rules(node) == []


def test_non_default_gateway_routes_only_the_cluster_network(node, namespaces):
    pod = namespaces.make("pfpod")
    out = add(node, namespaces.path(pod), "c1", isDefaultGateway=False, mtu=1400)
    assert out.json["routes"] == [{"dst": "10.244.0.0/16", "gw": "10.244.1.1"}]
    routes = run("ip", "-4", "route", netns=pod).stdout
    assert "default" not in routes and "10.244.0.0/16 via 10.244.1.1" in routes
    assert {link["ifname"]: link["mtu"] for link in links(pod)}["eth0"] == 1400


def test_hairpin_and_alias_on_the_host_end(node, namespaces):
    pod = namespaces.make("pfpod")
    result = add(node, namespaces.path(pod), "c1").json
    host = next(link for link in links(node.netns)
                if link["ifname"] == result["interfaces"][1]["name"])
    assert host["master"] == "cni0"
    assert host["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert host["ifalias"] == f"pyflannel:{node.name}:c1:eth0"


def test_crash_leftovers_never_give_an_ip_twice(node, namespaces):
    """A crash after reserving (empty or full reservation file, no veth) blocks that IP."""
    folder = node.data_dir / node.name
    folder.mkdir(parents=True)
    (folder / "10.244.1.2").write_text("")              # crashed between create and write
    (folder / "10.244.1.3").write_bytes(b"crashed\r\neth0")  # crashed after reserving
    pod = namespaces.make("pfpod")
    out = add(node, namespaces.path(pod), "c1")
    assert out.code == 0, out.stdout
    assert out.json["ips"][0]["address"] == "10.244.1.4/24"
    # The runtime's DEL for the crashed ADD releases its reservation.
    assert delete(node, "", "crashed").code == 0
    assert reservations(node) == ["10.244.1.2", "10.244.1.4"]


def test_fifty_concurrent_adds_then_dels(node, namespaces):
    pods = [namespaces.make("pfpod") for _ in range(50)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        outs = list(pool.map(lambda ip: add(node, namespaces.path(ip[1]), f"c{ip[0]}"),
                             enumerate(pods)))
    assert all(o.code == 0 for o in outs), [o.stdout for o in outs if o.code]
    ips = [o.json["ips"][0]["address"].split("/")[0] for o in outs]
    assert len(set(ips)) == 50
    assert sorted(reservations(node)) == sorted(ips)
    with ThreadPoolExecutor(max_workers=16) as pool:
        reached = list(pool.map(lambda ip: ping(node.netns, ip, count=1), ips))
    assert all(reached)
    with ThreadPoolExecutor(max_workers=16) as pool:
        dels = list(pool.map(lambda ip: delete(node, namespaces.path(ip[1]), f"c{ip[0]}"),
                             enumerate(pods)))
    assert all(o.code == 0 for o in dels), [o.stdout for o in dels if o.code]
    assert_nothing_left(node)


def test_status(node):
    assert invoke("STATUS", node.conf(), node=node.netns).code == 0
    node.subnet_file.unlink()
    out = invoke("STATUS", node.conf(), node=node.netns)
    assert out.json["code"] == 50
    assert invoke("STATUS", node.conf("1.0.0"), node=node.netns).json["code"] == 1


def test_status_reports_exhaustion(node, namespaces):
    node.write_subnet_file(subnet="10.244.1.1/30")
    pod = namespaces.make("pfpod")
    assert add(node, namespaces.path(pod), "c1").code == 0  # the one usable IP of a /30
    out = invoke("STATUS", node.conf(), node=node.netns)
    assert out.json["code"] == 50 and "no free IP" in out.json["msg"]
    full = add(node, namespaces.path(namespaces.make("pfpod")), "c2")
    assert full.json["code"] == 100


def test_gc_releases_everything_not_listed(node, namespaces):
    pods = [namespaces.make("pfpod") for _ in range(3)]
    for i, pod in enumerate(pods):
        assert add(node, namespaces.path(pod), f"c{i}").code == 0
    conf = node.conf(**{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]})
    out = invoke("GC", conf, node=node.netns)
    assert out.code == 0, out.stdout
    assert reservations(node) == ["10.244.1.3"]
    assert records(node) == ["c1:eth0"]
    assert len(nat_rules(node)) == 4
    assert len(node_links(node) - {"lo", "cni0"}) == 1
    assert ping(node.netns, "10.244.1.3")
    assert invoke("GC", node.conf(**{"cni.dev/valid-attachments": []}), node=node.netns).code == 0
    assert_nothing_left(node)


def test_version_and_about():
    out = invoke("VERSION", b"", node=None)
    assert out.json == {"cniVersion": "1.1.0",
                        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    env_free = invoke("", b"", node=None)
    assert env_free.code == 0 and "CNI protocol versions supported" in env_free.stderr


def test_the_plugin_refuses_its_own_namespace_as_pod(node):
    out = invoke("ADD", node.conf(), node=node.netns, container_id="c1",
                 netns=f"/run/netns/{node.netns}")
    assert out.json["code"] == 8
    assert_nothing_left(node)


def test_plugin_runs_unprivileged_error_paths_without_pyroute2():
    env = {"CNI_COMMAND": "ADD"}
    out = invoke("ADD", b"{}", node=None, extra_env=env)
    assert out.code != 0 and out.json["code"] == 4
    assert os.environ.get("CNI_COMMAND") is None
