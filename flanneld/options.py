"""flanneld's command line: flannel's flag names, each also settable as `FLANNELD_<NAME>`
(upper case, dashes as underscores). A flag on the command line wins over the environment.
Booleans take Go's forms: `--ip-masq`, `--ip-masq=true`, `--iptables-forward-rules=false`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address

from .core.errors import ConfigError
from .core.lease_policy import LEASE_TTL, renew_margin

ENV_PREFIX = "FLANNELD_"
_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}


DEFAULT_KEY_FILE = "/var/lib/pyflannel/udp.key"
DEFAULT_CNI_SOCKET = "/run/flannel/cni.sock"

@dataclass(frozen=True)
class Options:
    etcd_endpoints: tuple[str, ...]
    etcd_prefix: str
    etcd_cafile: str | None
    etcd_certfile: str | None
    etcd_keyfile: str | None
    etcd_username: str | None
    etcd_password: str | None
    net_config_path: str | None      # written to etcd as the network config when absent
    iface: tuple[str, ...]
    public_ip: IPv4Address | None
    ip_masq: bool
    subnet_file: str
    subnet_lease_renew_margin: int   # minutes
    subnet_lease_ttl: int            # seconds
    healthz_ip: str
    healthz_port: int                # 0: no health endpoint
    iptables_resync: int             # seconds
    iptables_forward_rules: bool
    udp_offload: bool                # TUN TSO/checksum offload and UDP GSO/GRO when allowed
    udp_key_file: str                # the X25519 private key of the encrypted udp mode
    cni_socket: str                  # "": no warm path for the CNI plugin
    cni_plugin: str                  # the pyflannel executable serving it ("": found)
    verbosity: int

    @property
    def renew_margin_seconds(self) -> float:
        return renew_margin(self.subnet_lease_renew_margin)


def _bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r} (use true or false)")


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _version() -> str:
    try:
        return importlib.metadata.version("pyflannel")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flanneld",
        description="pyflannel's node daemon: leases this node's pod subnet in etcd, writes "
                    "the subnet file for the CNI plugin and carries pod traffic between "
                    "nodes in UDP (flannel's udp backend, same etcd and wire formats).",
        epilog="Every flag can also be set as an environment variable FLANNELD_<FLAG>, "
               "e.g. FLANNELD_ETCD_ENDPOINTS=https://10.0.0.1:2379; the command line wins.")
    a = p.add_argument
    a("--etcd-endpoints", type=_list, default=["http://127.0.0.1:2379"], metavar="URLS",
      help="comma-separated etcd URLs (default http://127.0.0.1:2379)")
    a("--etcd-prefix", default="/coreos.com/network", metavar="PATH",
      help="etcd prefix of the network config and leases (default /coreos.com/network)")
    a("--etcd-cafile", default=None, metavar="FILE", help="CA bundle to verify etcd")
    a("--etcd-certfile", default=None, metavar="FILE", help="client certificate for etcd")
    a("--etcd-keyfile", default=None, metavar="FILE", help="client key for etcd")
    a("--etcd-username", default=None, help="etcd user (with --etcd-password)")
    a("--etcd-password", default=None, help="etcd password")
    a("--net-config-path", default="", metavar="FILE",
      help="network config file (flannel's JSON), validated at start and written to "
           "<prefix>/config if etcd has none; an existing config is never overwritten "
           "(default: none, wait for the config in etcd)")
    a("--iface", action="append", default=[], metavar="NAME|IP",
      help="underlay interface by name or address; repeatable, the first present wins "
           "(default: the interface of the default route)")
    a("--public-ip", default=None, metavar="IP",
      help="address other nodes send to (default: the interface's address)")
    a("--ip-masq", type=_bool, nargs="?", const=True, default=False, metavar="BOOL",
      help="install masquerade rules for traffic leaving the cluster network (chain "
           "FLANNEL-POSTRTG)")
    a("--subnet-file", default="/run/flannel/subnet.env", metavar="FILE",
      help="where to write the subnet for the CNI plugin (default /run/flannel/subnet.env)")
    a("--subnet-lease-renew-margin", type=int, default=60, metavar="MINUTES",
      help="renew the lease this long before it expires (1..1439, default 60)")
    a("--subnet-lease-ttl", type=int, default=LEASE_TTL, metavar="SECONDS",
      help=f"etcd lease TTL (default {LEASE_TTL}, flannel's 24 h; shorter is for tests)")
    a("--healthz-ip", default="0.0.0.0", metavar="IP",
      help="address for /healthz, /metrics and /leases (default 0.0.0.0)")
    a("--healthz-port", type=int, default=0, metavar="PORT",
      help="port for /healthz, /metrics and /leases (default 0: disabled)")
    a("--iptables-resync", type=int, default=5, metavar="SECONDS",
      help="check and restore the iptables rules this often (default 5)")
    a("--iptables-forward-rules", type=_bool, nargs="?", const=True, default=True,
      metavar="BOOL", help="accept forwarded cluster traffic in chain FLANNEL-FWD "
                           "(default true)")
    a("--udp-offload", type=_bool, nargs="?", const=True, default=True, metavar="BOOL",
      help="udp backend: move TCP as 64 KiB super-packets (TUN TSO/checksum offload, UDP "
           "GSO and GRO, each where the kernel allows; default true); false carries one "
           "packet per system call, for troubleshooting")
    a("--udp-key-file", default=DEFAULT_KEY_FILE, metavar="PATH",
      help="udp backend with Backend.Encryption: this node's X25519 private key (base64, "
           "as `wg genkey` writes it; made with mode 0600 on first start and kept; "
           f"default {DEFAULT_KEY_FILE})")
    a("--cni-socket", default=DEFAULT_CNI_SOCKET, metavar="PATH",
      help="serve the pyflannel CNI plugin's calls on this unix socket (mode 0600), so "
           "that a pod's ADD or DEL costs a fork of a warm worker instead of the plugin's "
           f"start-up; empty: do not (default {DEFAULT_CNI_SOCKET}, the plugin's default)")
    a("--cni-plugin", default="", metavar="PATH",
      help="the pyflannel executable whose `--serve` mode runs the worker (default: the "
           "one beside flanneld, in the build's layout, on PATH or in /opt/cni/bin)")
    a("-v", "--v", dest="verbosity", type=int, default=0, metavar="LEVEL",
      help="log verbosity: 0 info, 1 debug, 2 and up also netlink messages (default 0)")
    a("--version", action="version", version=f"flanneld (pyflannel) {_version()}")
    return p


def _env_defaults(p: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Turn FLANNELD_* variables into parser defaults, converted like the flag's value."""
    defaults = {}
    for action in p._actions:
        flag = next((s for s in action.option_strings if s.startswith("--")), None)
        if flag is None or flag == "--version" or action.dest == "help":
            continue
        value = env.get(ENV_PREFIX + flag[2:].upper().replace("-", "_"))
        if value is None:
            continue
        try:
            if action.dest == "iface":
                continue  # appended to, not replaced: handled in `parse`
            if callable(action.type):
                defaults[action.dest] = action.type(value)
            else:
                defaults[action.dest] = value
        except (ValueError, argparse.ArgumentTypeError) as e:
            raise ConfigError(f"{ENV_PREFIX}{flag[2:].upper().replace('-', '_')}="
                              f"{value!r}: {e}") from None
    p.set_defaults(**defaults)


def parse(argv: Sequence[str], env: Mapping[str, str]) -> Options:
    """Options from the command line and environment; ConfigError for a bad value.
    `--help` and `--version` print and exit, as argparse does."""
    p = _parser()
    _env_defaults(p, env)
    ns = p.parse_args(list(argv))
    iface = ns.iface or _list(env.get(ENV_PREFIX + "IFACE", ""))
    try:
        public_ip = IPv4Address(ns.public_ip) if ns.public_ip else None
    except AddressValueError:
        raise ConfigError(f"--public-ip={ns.public_ip!r} is not an IPv4 address") from None
    if not ns.etcd_endpoints:
        raise ConfigError("--etcd-endpoints is empty")
    if not 1 <= ns.subnet_lease_ttl <= LEASE_TTL * 30:
        raise ConfigError(f"--subnet-lease-ttl={ns.subnet_lease_ttl} is out of range "
                          f"(1..{LEASE_TTL * 30} seconds)")
    if not 0 <= ns.healthz_port <= 65535:
        raise ConfigError(f"--healthz-port={ns.healthz_port} is not a port number")
    renew_margin(ns.subnet_lease_renew_margin)  # ConfigError outside 1..1439
    if ns.cni_socket and not ns.cni_socket.startswith("/"):
        raise ConfigError(f"--cni-socket={ns.cni_socket!r} is not an absolute path")
    if ns.iptables_resync < 1:
        raise ConfigError(f"--iptables-resync={ns.iptables_resync} must be at least 1 second")
    return Options(
        etcd_endpoints=tuple(ns.etcd_endpoints), etcd_prefix=ns.etcd_prefix,
        etcd_cafile=ns.etcd_cafile or None, etcd_certfile=ns.etcd_certfile or None,
        etcd_keyfile=ns.etcd_keyfile or None, etcd_username=ns.etcd_username or None,
        etcd_password=ns.etcd_password or None,
        net_config_path=ns.net_config_path or None, iface=tuple(iface), public_ip=public_ip,
        ip_masq=ns.ip_masq, subnet_file=ns.subnet_file,
        subnet_lease_renew_margin=ns.subnet_lease_renew_margin,
        subnet_lease_ttl=ns.subnet_lease_ttl, healthz_ip=ns.healthz_ip,
        healthz_port=ns.healthz_port, iptables_resync=ns.iptables_resync,
        iptables_forward_rules=ns.iptables_forward_rules, udp_offload=ns.udp_offload,
        udp_key_file=ns.udp_key_file, cni_socket=ns.cni_socket, cni_plugin=ns.cni_plugin,
        verbosity=ns.verbosity)
