"""cni.core.netconf and cni.core.version: the stdin config and what each version allows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cni.core import netconf, version
from cni.core.attachment import Attachment
from cni.core.errors import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_NETWORK_CONFIG,
    UNSUPPORTED_FIELD,
    CNIError,
)
from cni.core.netconf import NetConf
from cni.core.requested import ARGS_IPS, ARGS_MAC, RUNTIME_IPS, RUNTIME_MAC, Wanted

BASE = {"cniVersion": "1.1.0", "name": "podnet", "type": "pyflannel"}


def parse(**changes: Any) -> NetConf:
    return netconf.parse(json.dumps({**BASE, **changes}))


def parse_error(data: str | bytes) -> CNIError:
    with pytest.raises(CNIError) as e:
        netconf.parse(data)
    return e.value


def test_defaults() -> None:
    assert parse() == NetConf(
        cni_version="1.1.0", name="podnet", subnet_file="/run/flannel/subnet.env",
        data_dir="/var/lib/cni/pyflannel", bridge="cni0", mtu=None, hairpin_mode=True,
        is_default_gateway=True, ip_masq=None, dns={}, prev_result=None, valid_attachments=None)


def test_every_key_set() -> None:
    prev = {"cniVersion": "1.1.0", "ips": []}
    conf = parse(subnetFile="/tmp/s.env", dataDir="/tmp/d", bridge="br-pods", mtu=1400,
                 hairpinMode=False, isDefaultGateway=False, ipMasq=True,
                 dns={"nameservers": ["10.96.0.10"]}, prevResult=prev)
    assert conf == NetConf("1.1.0", "podnet", "/tmp/s.env", "/tmp/d", "br-pods", 1400, False,
                           False, True, {"nameservers": ["10.96.0.10"]}, prev)


def test_null_values_take_the_default() -> None:
    assert parse(bridge=None, mtu=None, hairpinMode=None, ipMasq=None) == parse()


@pytest.mark.parametrize("cni_version", version.SUPPORTED)
def test_every_supported_version_parses(cni_version: str) -> None:
    assert parse(cniVersion=cni_version).cni_version == cni_version


def test_unknown_and_reserved_keys_are_accepted() -> None:
    assert parse(foo={"bar": 1}, capabilities={"portMappings": True}, runtimeConfig={},
                 args={"cni": {}}, **{"cni.dev/other": 1}) == parse()


@pytest.mark.parametrize("data", ["", "{", "not json", b"\xff\xfe", '{"name": "x",}'])
def test_bad_json_is_code_6(data: str | bytes) -> None:
    error = parse_error(data)
    assert (error.code, error.msg) == (DECODING_FAILURE, "error parsing network config")


@pytest.mark.parametrize("data", ["[]", "null", "42", '"text"', "true"])
def test_non_object_is_code_6(data: str) -> None:
    error = parse_error(data)
    assert (error.code, error.details) == (DECODING_FAILURE,
                                           "the configuration is not a JSON object")


def test_missing_cni_version_is_treated_as_0_1_0() -> None:
    error = parse_error(json.dumps({"name": "podnet"}))
    assert (error.code, error.msg) == (INCOMPATIBLE_VERSION, "incompatible CNI versions")
    assert "'0.1.0'" in error.details
    assert netconf.cni_version_of({}) == "0.1.0"


@pytest.mark.parametrize(("value", "msg"), [
    ("0.1.0", "incompatible CNI versions"),
    ("0.2.0", "incompatible CNI versions"),
    ("1.2.0", "incompatible CNI versions"),
    ("2.0.0", "incompatible CNI versions"),
    ("1.0", "invalid cniVersion"),
    ("1.0.0.0", "invalid cniVersion"),
    ("v1.0.0", "invalid cniVersion"),
    ("", "invalid cniVersion"),
    (1, "invalid cniVersion"),
    (None, "invalid cniVersion"),
])
def test_unsupported_version_is_code_1(value: Any, msg: str) -> None:
    error = parse_error(json.dumps({**BASE, "cniVersion": value}))
    assert (error.code, error.msg) == (INCOMPATIBLE_VERSION, msg)


@pytest.mark.parametrize(("name", "msg"), [
    (None, "missing network name"), ("", "missing network name"),
    (7, "missing network name"), (["podnet"], "missing network name"),
    ("-podnet", "invalid network name"), ("pod net", "invalid network name"),
    ("pod/net", "invalid network name"), ("pod:net", "invalid network name"),
    ("podnet\n", "invalid network name"),
])
def test_missing_or_invalid_name_is_code_7(name: Any, msg: str) -> None:
    raw = {**BASE, "name": name} if name is not None else {"cniVersion": "1.1.0"}
    error = parse_error(json.dumps(raw))
    assert (error.code, error.msg) == (INVALID_NETWORK_CONFIG, msg)


def test_missing_name_with_unsupported_version_reports_the_version_first() -> None:
    assert parse_error(json.dumps({"cniVersion": "0.2.0"})).code == INCOMPATIBLE_VERSION


@pytest.mark.parametrize(("key", "value"), [
    ("hairpinMode", "yes"), ("hairpinMode", 1), ("isDefaultGateway", "true"),
    ("ipMasq", 0), ("mtu", True), ("mtu", "1500"), ("mtu", 1500.0), ("bridge", 5),
    ("subnetFile", ["/run/x"]), ("dataDir", {}), ("dns", []), ("prevResult", "{}"),
])
def test_wrong_types_are_code_7_naming_the_key(key: str, value: Any) -> None:
    error = parse_error(json.dumps({**BASE, key: value}))
    assert (error.code, error.msg) == (INVALID_NETWORK_CONFIG, f"invalid network config: {key}")
    assert error.details.startswith(f"{key}={value!r} must be a ")


@pytest.mark.parametrize("mtu", [10, 67, 65536, -1])
def test_mtu_out_of_range_is_code_7(mtu: int) -> None:
    error = parse_error(json.dumps({**BASE, "mtu": mtu}))
    assert (error.code, error.msg) == (INVALID_NETWORK_CONFIG, "invalid network config: mtu")
    assert error.details == f"mtu={mtu} is not in 68..65535"


@pytest.mark.parametrize(("mtu", "parsed"), [(68, 68), (65535, 65535), (0, None)])
def test_mtu_bounds(mtu: int, parsed: int | None) -> None:
    assert parse(mtu=mtu).mtu == parsed


def test_ipam_key_is_code_2() -> None:
    error = parse_error(json.dumps({**BASE, "ipam": {"type": "host-local"}}))
    assert (error.code, error.msg) == (UNSUPPORTED_FIELD, "unsupported field: ipam")
    assert error.details.startswith('ipam={"type": "host-local"}')


@pytest.mark.parametrize(("bridge", "problem"), [
    ("", "is empty"), ("b" * 16, "is longer than 15 bytes"), ("br/0", "contains"),
    ("br 0", "contains"), ("..", "is '.' or '..'"),
])
def test_bad_bridge_name_is_code_7(bridge: str, problem: str) -> None:
    error = parse_error(json.dumps({**BASE, "bridge": bridge}))
    assert (error.code, error.msg) == (INVALID_NETWORK_CONFIG, "invalid network config: bridge")
    assert error.details.startswith(f"{bridge!r} {problem}")


VALID = [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}]


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_attachments_from_either_key(key: str) -> None:
    conf = parse(**{key: VALID + [{"containerID": "c3", "ifname": "eth0", "extra": 1}]})
    assert conf.valid_attachments == (Attachment("c1", "eth0"), Attachment("c2", "net1"),
                                      Attachment("c3", "eth0"))
    assert parse(**{key: []}).valid_attachments == ()


def test_gc_valid_attachments_key_wins_over_the_old_one() -> None:
    conf = parse(**{"cni.dev/valid-attachments": VALID[:1], "cni.dev/attachments": VALID})
    assert conf.valid_attachments == (Attachment("c1", "eth0"),)


@pytest.mark.parametrize("value", [
    None, {}, "c1", [["c1", "eth0"]], [{"containerID": "c1"}], [{"ifname": "eth0"}],
    [{"containerID": 1, "ifname": "eth0"}],
])
def test_bad_gc_attachments_are_code_7(value: Any) -> None:
    error = parse_error(json.dumps({**BASE, "cni.dev/valid-attachments": value}))
    assert (error.code, error.msg) == (INVALID_NETWORK_CONFIG,
                                       "invalid network config: cni.dev/valid-attachments")


# --- version gating ---------------------------------------------------------------------

@pytest.mark.parametrize(("command", "allowed_from"), [
    ("ADD", "0.3.0"), ("DEL", "0.3.0"), ("CHECK", "0.4.0"), ("STATUS", "1.1.0"),
    ("GC", "1.1.0"),
])
@pytest.mark.parametrize("cni_version", version.SUPPORTED)
def test_command_gating(command: str, allowed_from: str, cni_version: str) -> None:
    if version.parse(cni_version) >= version.parse(allowed_from):
        version.require_command_allowed(command, cni_version)
        return
    with pytest.raises(CNIError) as e:
        version.require_command_allowed(command, cni_version)
    assert (e.value.code, e.value.msg) == (INCOMPATIBLE_VERSION,
                                           f"config version does not allow {command}")
    assert e.value.details == (f"{command} needs cniVersion >= {allowed_from}, "
                               f"config is {cni_version}")


@pytest.mark.parametrize(("text", "parsed"), [("0.4.0", (0, 4, 0)), ("1.10.2", (1, 10, 2))])
def test_version_parse(text: str, parsed: tuple[int, int, int]) -> None:
    assert version.parse(text) == parsed


@pytest.mark.parametrize("cni_version", version.SUPPORTED)
def test_ip_version_field_only_before_1_0_0(cni_version: str) -> None:
    assert version.has_ip_version_field(cni_version) == cni_version.startswith("0.")


def test_at_least_compares_numerically() -> None:
    assert version.at_least("0.10.0", "0.4.0")
    assert not version.at_least("0.4.0", "0.10.0")


# --- hostile input and requests ------------------------------------------------------------

@pytest.mark.parametrize("data", [
    "[" * 100_000 + "]" * 100_000,
    json.dumps({**BASE, "x": 1})[:-1] + ', "deep": ' + "[" * 50_000 + "]" * 50_000 + "}",
])
def test_nesting_too_deep_for_python_is_a_decoding_error(data: str) -> None:
    error = parse_error(data)
    assert (error.code, error.details) == (DECODING_FAILURE, "the JSON is nested too deeply")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("dataDir", r"/var/lib/\udc80", "not valid UTF-8"),     # JSON escapes, as sent
    ("subnetFile", r"/run/a\u0000b", "NUL"),
])
def test_paths_that_cannot_be_opened_or_recorded_are_code_7(key: str, value: str,
                                                           words: str) -> None:
    error = parse_error(f'{{"cniVersion": "1.1.0", "name": "n", "{key}": "{value}"}}')
    assert error.code == INVALID_NETWORK_CONFIG and key in error.msg and words in error.details


def test_args_and_runtime_config_requests_are_collected_in_order() -> None:
    conf = parse(args={"cni": {"ips": ["10.0.0.5"], "mac": "02:00:00:00:00:01"}},
                 runtimeConfig={"ips": ["10.0.0.5/24"], "mac": "02:00:00:00:00:02",
                                "portMappings": []})
    assert conf.requested_ips == (Wanted("10.0.0.5", ARGS_IPS),
                                  Wanted("10.0.0.5/24", RUNTIME_IPS))
    assert conf.requested_macs == (Wanted("02:00:00:00:00:01", ARGS_MAC),
                                   Wanted("02:00:00:00:00:02", RUNTIME_MAC))
    assert parse(args={"K8S_POD_NAME": "x"}, runtimeConfig={"mac": ""}).requested_macs == ()


@pytest.mark.parametrize(("changes", "culprit"), [
    ({"runtimeConfig": []}, "runtimeConfig"),
    ({"args": {"cni": "ips"}}, "args.cni"),
    ({"runtimeConfig": {"ips": "10.0.0.5"}}, "runtimeConfig.ips"),
    ({"runtimeConfig": {"ips": [5]}}, "runtimeConfig.ips"),
    ({"args": {"cni": {"mac": 5}}}, "args.cni.mac"),
])
def test_malformed_requests_are_code_7_naming_the_key(changes: dict, culprit: str) -> None:
    error = parse_error(json.dumps({**BASE, **changes}))
    assert error.code == INVALID_NETWORK_CONFIG and error.msg.endswith(culprit)


def test_an_error_message_shows_a_bounded_value() -> None:
    error = parse_error(json.dumps({**BASE, "mtu": "x" * 10_000}))
    assert len(error.details) < 200


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    error = parse_error('{"cniVersion": "1.1.0", "name": "n", "dns": {"x": ' + constant + "}}")
    assert error.code == DECODING_FAILURE and constant in error.details


def test_gc_attachments_must_be_utf8() -> None:
    error = parse_error(r'{"cniVersion": "1.1.0", "name": "n", '
                        r'"cni.dev/valid-attachments": [{"containerID": "\udcff", "ifname": "e"}]}')
    assert error.code == INVALID_NETWORK_CONFIG and "containerID" in error.msg
