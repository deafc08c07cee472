"""The iptables rules that masquerade one pod's traffic leaving the cluster network, as
text: what `iptables-restore --noflush` is fed, and what an `iptables -t nat -S` listing
is searched for. `io.masq` runs iptables with them.

Per attachment, in table nat: chain `PYFL-…` with `-d <cluster network> -j ACCEPT` and
`! -d 224.0.0.0/4 -j MASQUERADE`, jumped to from POSTROUTING by `-s <pod ip>`. Unlike
the bridge plugin, traffic to every pod of the cluster (not just this node's) is
exempt, so pod-to-pod traffic across nodes keeps its source address.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

MULTICAST = "224.0.0.0/4"


def setup_payload(chain: str, ip: IPv4Address, exempt: tuple[IPv4Network, ...],
                  comment: str) -> str:
    """The iptables-restore payload that sets the chain up. `comment` holds only
    characters of network names and container IDs, so it needs no escaping."""
    c = f'-m comment --comment "{comment}"'
    lines = ["*nat", f":{chain} - [0:0]"]
    lines += [f"-A {chain} -d {net} {c} -j ACCEPT" for net in exempt]
    lines += [f"-A {chain} ! -d {MULTICAST} {c} -j MASQUERADE",
              f"-A POSTROUTING -s {ip}/32 {c} -j {chain}", "COMMIT", ""]
    return "\n".join(lines)


def removal_payload(chain: str, listing: str) -> str:
    """The iptables-restore payload that removes the chain and every POSTROUTING jump to
    it, given the nat table's `-S` listing; "" when neither is there."""
    jumps = [line for line in listing.splitlines()
             if line.startswith("-A POSTROUTING ") and line.endswith(f"-j {chain}")]
    if not jumps and f"-N {chain}" not in listing.splitlines():
        return ""
    lines = ["*nat"] + ["-D" + line[2:] for line in jumps]
    if f"-N {chain}" in listing.splitlines():
        lines += [f"-F {chain}", f"-X {chain}"]
    return "\n".join(lines + ["COMMIT", ""])


def is_present(chain: str, ip: IPv4Address, listing: str) -> bool:
    """Whether the nat table's `-S` listing has the chain and the jump to it for `ip`."""
    lines = listing.splitlines()
    return f"-N {chain}" in lines and any(
        line.startswith(f"-A POSTROUTING -s {ip}/32") and line.endswith(f"-j {chain}")
        for line in lines)
