"""The network configuration on stdin, decoded and validated.

Keys beyond the standard ones (defaults in brackets): subnetFile
[/run/flannel/subnet.env], dataDir [/var/lib/cni/pyflannel], bridge [cni0],
mtu [FLANNEL_MTU], hairpinMode [true], isDefaultGateway [true],
ipMasq [not FLANNEL_IPMASQ]. Unknown keys are accepted and ignored, as the spec asks.
A requested IP and MAC may come in `args.cni.ips` / `args.cni.mac` and in
`runtimeConfig.ips` / `runtimeConfig.mac` (see `requested`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import version
from .attachment import Attachment
from .errors import (
    DECODING_FAILURE,
    INVALID_NETWORK_CONFIG,
    UNSUPPORTED_FIELD,
    CNIError,
    shown,
)
from .requested import ARGS_IPS, ARGS_MAC, RUNTIME_IPS, RUNTIME_MAC, Wanted
from .skel import ID_PATTERN, validate_ifname, validate_text

DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/pyflannel"
DEFAULT_BRIDGE = "cni0"
GC_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


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
    requested_ips: tuple[Wanted, ...] = ()       # args.cni.ips, then runtimeConfig.ips
    requested_macs: tuple[Wanted, ...] = ()      # args.cni.mac, then runtimeConfig.mac


def _invalid(msg: str, details: str = "") -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, msg, details)


def _typed(raw: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    if key not in raw or raw[key] is None:
        return default
    value = raw[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise _invalid(f"invalid network config: {key}",
                       f"{key}={shown(value)} must be a {kind.__name__}")
    return value


def _path(raw: dict[str, Any], key: str, default: str) -> str:
    value: str = _typed(raw, key, str, default)
    validate_text(value, f"network config: {key}", INVALID_NETWORK_CONFIG)
    return value


def _section(raw: dict[str, Any], *keys: str) -> dict[str, Any]:
    """raw[keys[0]][keys[1]]..., {} where absent; an error where it is not an object."""
    for depth, key in enumerate(keys):
        value = raw.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            where = ".".join(keys[:depth + 1])
            raise _invalid(f"invalid network config: {where}", "must be an object")
        raw = value
    return raw


def _requests(raw: dict[str, Any]) -> tuple[tuple[Wanted, ...], tuple[Wanted, ...]]:
    ips: list[Wanted] = []
    macs: list[Wanted] = []
    for section, ips_key, mac_key in ((_section(raw, "args", "cni"), ARGS_IPS, ARGS_MAC),
                                      (_section(raw, "runtimeConfig"), RUNTIME_IPS,
                                       RUNTIME_MAC)):
        listed = section.get("ips")
        if listed is not None:
            if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
                raise _invalid(f"invalid network config: {ips_key}",
                               f"{shown(listed)} must be a list of strings")
            ips += [Wanted(x, ips_key) for x in listed]
        mac = section.get("mac")
        if mac is not None and mac != "":
            if not isinstance(mac, str):
                raise _invalid(f"invalid network config: {mac_key}",
                               f"{shown(mac)} is not a string")
            macs.append(Wanted(mac, mac_key))
    return tuple(ips), tuple(macs)


def _attachments(raw: dict[str, Any]) -> tuple[Attachment, ...] | None:
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
                           f"entry {shown(item)} needs string containerID and ifname")
        validate_text(item["containerID"], f"network config: {key} containerID",
                      INVALID_NETWORK_CONFIG)
        validate_text(item["ifname"], f"network config: {key} ifname", INVALID_NETWORK_CONFIG)
        out.append(Attachment(item["containerID"], item["ifname"]))
    return tuple(out)


def _not_json(name: str) -> Any:
    """Python's json reads NaN and Infinity, which JSON has not: a result echoing them
    (in `dns`, say) would be unreadable to the runtime."""
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes | str) -> dict[str, Any]:
    try:
        raw = json.loads(data, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as e:
        raise CNIError(DECODING_FAILURE, "error parsing network config", str(e)) from None
    except RecursionError:
        raise CNIError(DECODING_FAILURE, "error parsing network config",
                       "the JSON is nested too deeply") from None
    if not isinstance(raw, dict):
        raise CNIError(DECODING_FAILURE, "error parsing network config",
                       "the configuration is not a JSON object")
    return raw


def cni_version_of(raw: dict[str, Any]) -> str:
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
                       f"{shown(name)} has characters a network name cannot have")
    if "ipam" in raw:
        raise CNIError(UNSUPPORTED_FIELD, "unsupported field: ipam",
                       f"ipam={shown(raw['ipam'], render=json.dumps)}: "
                       "pyflannel allocates from the subnet file")
    bridge = _typed(raw, "bridge", str, DEFAULT_BRIDGE)
    try:
        validate_ifname(bridge)
    except CNIError as e:
        raise _invalid("invalid network config: bridge", e.details) from None
    mtu = _typed(raw, "mtu", int, 0) or None
    if mtu is not None and not 68 <= mtu <= 65535:
        raise _invalid("invalid network config: mtu", f"mtu={mtu} is not in 68..65535")
    prev = _typed(raw, "prevResult", dict, None)
    requested_ips, requested_macs = _requests(raw)
    return NetConf(
        cni_version=cni_version,
        name=name,
        subnet_file=_path(raw, "subnetFile", DEFAULT_SUBNET_FILE),
        data_dir=_path(raw, "dataDir", DEFAULT_DATA_DIR),
        bridge=bridge,
        mtu=mtu,
        hairpin_mode=_typed(raw, "hairpinMode", bool, True),
        is_default_gateway=_typed(raw, "isDefaultGateway", bool, True),
        ip_masq=_typed(raw, "ipMasq", bool, None),
        dns=_typed(raw, "dns", dict, {}),
        prev_result=prev,
        valid_attachments=_attachments(raw),
        requested_ips=requested_ips,
        requested_macs=requested_macs,
    )
