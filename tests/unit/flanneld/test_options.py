"""flanneld.options: flannel's flags, FLANNELD_* variables, Go-style booleans, validation."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from flanneld.core.errors import ConfigError
from flanneld.core.lease_policy import LEASE_TTL
from flanneld.options import parse


def test_defaults_are_flannels() -> None:
    o = parse([], {})
    assert o.etcd_endpoints == ("http://127.0.0.1:2379",)
    assert o.etcd_prefix == "/coreos.com/network"
    assert o.subnet_file == "/run/flannel/subnet.env"
    assert o.subnet_lease_renew_margin == 60 and o.renew_margin_seconds == 3600.0
    assert o.subnet_lease_ttl == LEASE_TTL
    assert (o.ip_masq, o.iptables_forward_rules) == (False, True)
    assert (o.healthz_ip, o.healthz_port, o.iptables_resync) == ("0.0.0.0", 0, 5)
    assert o.iface == () and o.public_ip is None and o.etcd_cafile is None
    assert o.net_config_path is None
    assert o.udp_offload


def test_offloads_can_be_turned_off_by_flag_or_variable() -> None:
    assert not parse(["--udp-offload=false"], {}).udp_offload
    assert not parse([], {"FLANNELD_UDP_OFFLOAD": "false"}).udp_offload
    assert parse(["--udp-offload"], {"FLANNELD_UDP_OFFLOAD": "false"}).udp_offload


def test_flags() -> None:
    o = parse(["--etcd-endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379",
               "--etcd-prefix", "/x/net", "--etcd-cafile", "/ca", "--etcd-certfile", "/c",
               "--etcd-keyfile", "/k", "--iface", "eth1", "--iface", "10.0.0.5",
               "--public-ip", "1.2.3.4", "--ip-masq", "--subnet-file", "/tmp/s.env",
               "--subnet-lease-renew-margin", "5", "--healthz-ip", "127.0.0.1",
               "--healthz-port", "8471", "--iptables-forward-rules=false", "-v", "2"], {})
    assert o.etcd_endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert (o.etcd_prefix, o.etcd_cafile, o.etcd_certfile, o.etcd_keyfile) == \
        ("/x/net", "/ca", "/c", "/k")
    assert o.iface == ("eth1", "10.0.0.5") and o.public_ip == IPv4Address("1.2.3.4")
    assert o.ip_masq and not o.iptables_forward_rules and o.verbosity == 2
    assert (o.subnet_file, o.subnet_lease_renew_margin) == ("/tmp/s.env", 5)
    assert (o.healthz_ip, o.healthz_port) == ("127.0.0.1", 8471)


def test_net_config_path_from_the_flag_or_the_environment() -> None:
    env = {"FLANNELD_NET_CONFIG_PATH": "/etc/kube-pyflannel/net-conf.json"}
    assert parse([], env).net_config_path == "/etc/kube-pyflannel/net-conf.json"
    assert parse(["--net-config-path", "/x.json"], env).net_config_path == "/x.json"
    assert parse(["--net-config-path="], env).net_config_path is None  # empty: off


def test_environment_variables_and_the_command_line_winning() -> None:
    env = {"FLANNELD_ETCD_ENDPOINTS": "http://10.1.1.1:2379", "FLANNELD_IP_MASQ": "true",
           "FLANNELD_IFACE": "eth0,eth1", "FLANNELD_SUBNET_LEASE_TTL": "20",
           "FLANNELD_IPTABLES_FORWARD_RULES": "false", "FLANNELD_HEALTHZ_PORT": "9"}
    o = parse([], env)
    assert o.etcd_endpoints == ("http://10.1.1.1:2379",) and o.ip_masq
    assert o.iface == ("eth0", "eth1") and o.subnet_lease_ttl == 20
    assert not o.iptables_forward_rules and o.healthz_port == 9
    o = parse(["--iface", "eth9", "--ip-masq=false", "--healthz-port", "10"], env)
    assert o.iface == ("eth9",) and not o.ip_masq and o.healthz_port == 10


@pytest.mark.parametrize("argv, env, message", [
    (["--subnet-lease-renew-margin", "0"], {}, "out of range"),
    (["--subnet-lease-renew-margin", "1440"], {}, "out of range"),
    (["--public-ip", "fe80::1"], {}, "not an IPv4 address"),
    (["--healthz-port", "70000"], {}, "not a port number"),
    (["--subnet-lease-ttl", "0"], {}, "out of range"),
    (["--iptables-resync", "0"], {}, "at least 1 second"),
    ([], {"FLANNELD_IP_MASQ": "maybe"}, "FLANNELD_IP_MASQ='maybe'"),
    ([], {"FLANNELD_HEALTHZ_PORT": "x"}, "FLANNELD_HEALTHZ_PORT"),
])
def test_bad_values_are_clear_errors(argv, env, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(argv, env)


def test_a_bad_flag_value_exits_like_argparse(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        parse(["--ip-masq=perhaps"], {})
    assert e.value.code == 2 and "not a boolean" in capsys.readouterr().err


def test_help_and_version(capsys) -> None:
    for flag in ("--help", "--version"):
        with pytest.raises(SystemExit) as e:
            parse([flag], {})
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--etcd-endpoints" in out and "FLANNELD_" in out and "flanneld (pyflannel)" in out


def test_the_cni_socket_is_on_by_default_off_when_empty_and_absolute() -> None:
    assert parse([], {}).cni_socket == "/run/flannel/cni.sock"
    assert parse(["--cni-socket="], {}).cni_socket == ""
    assert parse([], {"FLANNELD_CNI_SOCKET": "/run/x.sock"}).cni_socket == "/run/x.sock"
    assert parse(["--cni-plugin", "/opt/p"], {}).cni_plugin == "/opt/p"
    with pytest.raises(ConfigError, match="--cni-socket='x.sock' is not an absolute path"):
        parse(["--cni-socket=x.sock"], {})
