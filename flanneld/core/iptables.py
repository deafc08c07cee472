"""flannel's iptables rules (`--ip-masq`, `--iptables-forward-rules`) and how to keep them.

Each set is one chain of our own, jumped to once from a built-in chain; rules are written
in the exact form `iptables -S` prints them, so a listing can be compared line by line:

    nat     POSTROUTING -> FLANNEL-POSTRTG  (comment "flanneld masq")
    filter  FORWARD     -> FLANNEL-FWD      (comment "flanneld forward")

`restore_payload` declares the chain (iptables-restore flushes a declared chain, even with
--noflush) and adds the jump only when it is missing, so applying is idempotent;
`in_sync` says whether a listing already holds exactly the wanted rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

MASQ_CHAIN = "FLANNEL-POSTRTG"
FORWARD_CHAIN = "FLANNEL-FWD"
KUBE_PROXY_MARK = "0x4000/0x4000"  # packets kube-proxy marks for its own masquerade
MULTICAST = "224.0.0.0/4"


@dataclass(frozen=True)
class ChainSpec:
    """A chain of our own, its rules (`-A` lines) and the jump to it from `parent`."""

    table: str
    chain: str
    parent: str
    comment: str
    rules: tuple[str, ...]

    @property
    def jump(self) -> str:
        return f'-A {self.parent} -m comment --comment "{self.comment}" -j {self.chain}'


def masq_spec(network: IPv4Network, subnet: IPv4Network, random_fully: bool = True) -> ChainSpec:
    """flannel's masquerade rules: traffic inside the cluster network keeps its source;
    pods reaching out, and outsiders reaching the cluster through this node, are NATed."""
    c = '-m comment --comment "flanneld masq"'
    masq = "MASQUERADE --random-fully" if random_fully else "MASQUERADE"
    rules = (
        f"-m mark --mark {KUBE_PROXY_MARK} {c} -j RETURN",
        f"-s {subnet} -d {network} {c} -j RETURN",
        f"-s {network} -d {subnet} {c} -j RETURN",
        f"! -s {network} -d {subnet} {c} -j RETURN",
        f"-s {network} ! -d {MULTICAST} {c} -j {masq}",
        f"! -s {network} -d {network} {c} -j {masq}",
    )
    return ChainSpec("nat", MASQ_CHAIN, "POSTROUTING", "flanneld masq",
                     tuple(f"-A {MASQ_CHAIN} {r}" for r in rules))


def forward_spec(network: IPv4Network) -> ChainSpec:
    """flannel's forward rules: accept everything from and to the cluster network."""
    c = '-m comment --comment "flanneld forward"'
    return ChainSpec("filter", FORWARD_CHAIN, "FORWARD", "flanneld forward",
                     (f"-A {FORWARD_CHAIN} -s {network} {c} -j ACCEPT",
                      f"-A {FORWARD_CHAIN} -d {network} {c} -j ACCEPT"))


def _lines(listing: str) -> list[str]:
    return [line.strip() for line in listing.splitlines() if line.strip()]


def in_sync(spec: ChainSpec, listing: str) -> bool:
    """True when `iptables -t <table> -S` output holds exactly the chain's rules, in order,
    and exactly one jump to it."""
    lines = _lines(listing)
    ours = [line for line in lines if line.startswith(f"-A {spec.chain} ")]
    return (f"-N {spec.chain}" in lines and tuple(ours) == spec.rules
            and lines.count(spec.jump) == 1)


def restore_payload(spec: ChainSpec, listing: str) -> str:
    """iptables-restore --noflush input that brings the table to the wanted state."""
    lines = _lines(listing)
    jumps = lines.count(spec.jump)
    out = [f"*{spec.table}", f":{spec.chain} - [0:0]", *spec.rules]
    if jumps == 0:
        out.append(spec.jump)
    out += ["-D" + spec.jump[2:]] * max(0, jumps - 1)  # duplicates, e.g. from a racing restart
    return "\n".join([*out, "COMMIT", ""])


def removal_payload(spec: ChainSpec, listing: str) -> str:
    """iptables-restore --noflush input that removes the jumps and the chain; "" if absent."""
    lines = _lines(listing)
    jumps = [line for line in lines
             if line.startswith(f"-A {spec.parent} ") and line.endswith(f"-j {spec.chain}")]
    exists = f"-N {spec.chain}" in lines
    if not jumps and not exists:
        return ""
    out = [f"*{spec.table}", *("-D" + j[2:] for j in jumps)]
    if exists:
        out += [f"-F {spec.chain}", f"-X {spec.chain}"]
    return "\n".join([*out, "COMMIT", ""])
