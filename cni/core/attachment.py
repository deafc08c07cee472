"""An attachment (container ID + interface name: what the runtime attaches to a network),
and the record ADD keeps per attachment, so DEL, CHECK and GC work without the subnet file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from ipaddress import IPv4Interface


@dataclass(frozen=True)
class Attachment:
    """One attachment, as CNI names it: CNI_CONTAINERID and CNI_IFNAME."""

    container_id: str
    ifname: str


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
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


# File names the store makes stay well under NAME_MAX (255 bytes) with room for the
# temporary `.<name>.<pid>.tmp` beside them. A longer name (the spec sets no limit on
# container IDs and network names) becomes its first characters, '~' and a digest: '~'
# can appear in neither an ID nor a name, so it never meets a name kept as it is.
NAME_LIMIT = 200


def fit_filename(name: str) -> str:
    if len(name.encode()) <= NAME_LIMIT:
        return name
    return f"{name[:64]}~{hashlib.sha256(name.encode()).hexdigest()[:40]}"


def record_filename(owner: Attachment) -> str:
    # ':' can appear in neither a container ID nor an interface name.
    return fit_filename(f"{owner.container_id}:{owner.ifname}")
