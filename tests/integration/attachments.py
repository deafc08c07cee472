"""What the plugin tests look at on a node: its links, reservations, records, NAT rules."""

from __future__ import annotations

from pathlib import Path

from cni.core.attachment import fit_filename
from lab.netns import run
from lab.plugin import invoke, links


def node_links(node) -> set[str]:
    return {link["ifname"] for link in links(node.netns)}


def store_dir(node) -> Path:
    return node.data_dir / fit_filename(node.name)


def reservations(node) -> list[str]:
    folder = store_dir(node)
    return sorted(p.name for p in folder.iterdir() if p.name[0].isdigit()) \
        if folder.exists() else []


def records(node) -> list[str]:
    folder = store_dir(node) / "attachments"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def nat_rules(node) -> list[str]:
    return [r for r in run("iptables", "-t", "nat", "-S", netns=node.netns).stdout.splitlines()
            if "PYFL-" in r]


def leftover_files(node) -> list[str]:
    """Files in the data dir beyond the store's own (lock, round-robin position, folders)."""
    if not node.data_dir.exists():
        return []
    return sorted(str(p.relative_to(node.data_dir)) for p in node.data_dir.rglob("*")
                  if p.is_file() and p.name not in ("lock", "last_reserved_ip.0"))


def assert_nothing_left(node, pods: tuple[str, ...] = ()) -> None:
    """Nothing of any attachment remains on the node, nor in the pods' namespaces."""
    assert node_links(node) <= {"lo", "cni0"}
    assert reservations(node) == []
    assert records(node) == []
    assert nat_rules(node) == []
    assert leftover_files(node) == []
    for pod in pods:
        assert [link["ifname"] for link in links(pod)] == ["lo"], pod


def add(node, pod_path: str, cid: str, version: str = "1.1.0", ifname: str = "eth0",
        env: dict | None = None, **conf):
    return invoke("ADD", node.conf(version, **conf), node=node.netns, container_id=cid,
                  netns=pod_path, ifname=ifname, extra_env=env)


def delete(node, pod_path: str, cid: str, version: str = "1.1.0", ifname: str = "eth0",
           **conf):
    return invoke("DEL", node.conf(version, **conf), node=node.netns, container_id=cid,
                  netns=pod_path, ifname=ifname)
