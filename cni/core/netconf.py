"""The network configuration on stdin, decoded and validated.

Keys beyond the standard ones (defaults in brackets): subnetFile
[/run/flannel/subnet.env], dataDir [/var/lib/cni/pyflannel], bridge [cni0],
mtu [FLANNEL_MTU], hairpinMode [true], isDefaultGateway [true],
ipMasq [not FLANNEL_IPMASQ]. Unknown keys are accepted and ignored, as the spec asks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import version
from .errors import (
    DECODING_FAILURE,
    INVALID_NETWORK_CONFIG,
    UNSUPPORTED_FIELD,
    CNIError,
)
from .skel import ID_PATTERN, validate_ifname

DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/pyflannel"
DEFAULT_BRIDGE = "cni0"
GC_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


@dataclass(frozen=True)
class Attachment:
    container_id: str
    ifname: str


@dataclass(frozen=True)
class NetConf:
    cni_version: str
    name: str
    subnet_file: str = DEFAULT_SUBNET_FILE
    data_dir: str = DEFAULT_DATA_DIR
    bridge: str = DEFAULT_BRIDGE
    mtu: int | None = None
    hairpin_mode: bool = True
    is_default_gateway: bool = True
    ip_masq: bool | None = None
    dns: dict[str, Any] = field(default_factory=dict)
    prev_result: dict[str, Any] | None = None
    valid_attachments: tuple[Attachment, ...] | None = None


def _invalid(msg: str, details: str = "") -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, msg, details)


def _typed(raw: dict, key: str, kind: type, default: Any) -> Any:
    if key not in raw or raw[key] is None:
        return default
    value = raw[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise _invalid(f"invalid network config: {key}",
                       f"{key}={value!r} must be a {kind.__name__}")
    return value


def _attachments(raw: dict) -> tuple[Attachment, ...] | None:
    key = next((k for k in GC_KEYS if k in raw), None)
    if key is None:
        return None
    items = raw[key]
    if not isinstance(items, list):
        raise _invalid(f"invalid network config: {key}", "must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("containerID"), str) \
                or not isinstance(item.get("ifname"), str):
            raise _invalid(f"invalid network config: {key}",
                           f"entry {item!r} needs string containerID and ifname")
        out.append(Attachment(item["containerID"], item["ifname"]))
    return tuple(out)


def decode(data: bytes | str) -> dict:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(DECODING_FAILURE, "error parsing network config", str(e)) from None
    if not isinstance(raw, dict):
        raise CNIError(DECODING_FAILURE, "error parsing network config",
                       "the configuration is not a JSON object")
    return raw


def cni_version_of(raw: dict) -> str:
    """The config's version; libcni assumes 0.1.0 when it is missing."""
    value = raw.get("cniVersion", "0.1.0")
    return value if isinstance(value, str) else repr(value)


def parse(data: bytes | str) -> NetConf:
    raw = decode(data)
    cni_version = cni_version_of(raw)
    version.require_supported(cni_version)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid("missing network name")
    if not ID_PATTERN.fullmatch(name):
        raise _invalid("invalid network name",
                       f"{name!r} has characters a network name cannot have")
    if "ipam" in raw:
        raise CNIError(UNSUPPORTED_FIELD, "unsupported field: ipam",
                       f"ipam={json.dumps(raw['ipam'])}: pyflannel allocates from the subnet file")
    bridge = _typed(raw, "bridge", str, DEFAULT_BRIDGE)
    try:
        validate_ifname(bridge)
    except CNIError as e:
        raise _invalid("invalid network config: bridge", e.details) from None
    mtu = _typed(raw, "mtu", int, 0) or None
    if mtu is not None and not 68 <= mtu <= 65535:
        raise _invalid("invalid network config: mtu", f"mtu={mtu} is not in 68..65535")
    prev = _typed(raw, "prevResult", dict, None)
    return NetConf(
        cni_version=cni_version,
        name=name,
        subnet_file=_typed(raw, "subnetFile", str, DEFAULT_SUBNET_FILE),
        data_dir=_typed(raw, "dataDir", str, DEFAULT_DATA_DIR),
        bridge=bridge,
        mtu=mtu,
        hairpin_mode=_typed(raw, "hairpinMode", bool, True),
        is_default_gateway=_typed(raw, "isDefaultGateway", bool, True),
        ip_masq=_typed(raw, "ipMasq", bool, None),
        dns=_typed(raw, "dns", dict, {}),
        prev_result=prev,
        valid_attachments=_attachments(raw),
    )
