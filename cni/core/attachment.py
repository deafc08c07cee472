"""The record ADD keeps per attachment, so DEL, CHECK and GC work without the subnet file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Interface

from .netconf import Attachment


@dataclass(frozen=True)
class Record:
    owner: Attachment
    netns: str
    address: IPv4Interface
    host_veth: str
    bridge: str
    masq_chain: str | None

    def to_json(self) -> str:
        return json.dumps({
            "containerID": self.owner.container_id, "ifname": self.owner.ifname,
            "netns": self.netns, "address": str(self.address), "hostVeth": self.host_veth,
            "bridge": self.bridge, "masqChain": self.masq_chain,
        })


def record_from_json(text: str) -> Record | None:
    """The record, or None when the text is not one (a torn write, a foreign file)."""
    try:
        raw = json.loads(text)
        return Record(
            owner=Attachment(raw["containerID"], raw["ifname"]),
            netns=raw["netns"],
            address=IPv4Interface(raw["address"]),
            host_veth=raw["hostVeth"],
            bridge=raw["bridge"],
            masq_chain=raw.get("masqChain"),
        )
    except (ValueError, KeyError, TypeError):
        return None


def record_filename(owner: Attachment) -> str:
    # ':' can appear in neither a container ID nor an interface name.
    return f"{owner.container_id}:{owner.ifname}"
