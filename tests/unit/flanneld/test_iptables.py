"""flanneld.core.iptables: flannel's rules in `iptables -S` form, sync and removal."""

from __future__ import annotations

from ipaddress import IPv4Network

from flanneld.core.iptables import (
    forward_spec,
    in_sync,
    masq_spec,
    removal_payload,
    restore_payload,
)

NET, SUB = IPv4Network("10.244.0.0/16"), IPv4Network("10.244.3.0/24")
C = '-m comment --comment "flanneld masq"'


def listing(*lines: str) -> str:
    return "\n".join(["-P POSTROUTING ACCEPT", *lines]) + "\n"


def test_masq_rules_are_flannels_in_order() -> None:
    spec = masq_spec(NET, SUB)
    assert spec.table == "nat" and spec.parent == "POSTROUTING"
    assert spec.rules == (
        f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {C} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.3.0/24 -d 10.244.0.0/16 {C} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.3.0/24 {C} -j RETURN",
        f"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.3.0/24 {C} -j RETURN",
        f"-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 {C} -j MASQUERADE --random-fully",
        f"-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 {C} -j MASQUERADE --random-fully",
    )
    assert spec.jump == f"-A POSTROUTING {C} -j FLANNEL-POSTRTG"
    assert not any("random-fully" in r for r in masq_spec(NET, SUB, random_fully=False).rules)


def test_forward_rules() -> None:
    spec = forward_spec(NET)
    assert spec.table == "filter" and spec.jump.startswith("-A FORWARD ")
    assert [r.split(" -m ")[0] for r in spec.rules] == [
        "-A FLANNEL-FWD -s 10.244.0.0/16", "-A FLANNEL-FWD -d 10.244.0.0/16"]


def test_an_empty_table_gets_chain_rules_and_one_jump() -> None:
    spec = masq_spec(NET, SUB)
    assert not in_sync(spec, listing())
    payload = restore_payload(spec, listing()).splitlines()
    assert payload[:2] == ["*nat", ":FLANNEL-POSTRTG - [0:0]"] and payload[-1] == "COMMIT"
    assert payload.count(spec.jump) == 1 and all(r in payload for r in spec.rules)


def test_a_table_in_sync_is_recognised_and_reapplying_adds_no_second_jump() -> None:
    spec = masq_spec(NET, SUB)
    good = listing("-N FLANNEL-POSTRTG", spec.jump, *spec.rules)
    assert in_sync(spec, good)
    assert spec.jump not in restore_payload(spec, good).splitlines()


def test_drift_is_detected() -> None:
    spec = masq_spec(NET, SUB)
    assert not in_sync(spec, listing("-N FLANNEL-POSTRTG", *spec.rules))            # no jump
    assert not in_sync(spec, listing("-N FLANNEL-POSTRTG", spec.jump, *spec.rules[:-1]))
    assert not in_sync(spec, listing("-N FLANNEL-POSTRTG", spec.jump, spec.jump, *spec.rules))
    old = masq_spec(NET, IPv4Network("10.244.9.0/24"))                                # old subnet
    assert not in_sync(spec, listing("-N FLANNEL-POSTRTG", spec.jump, *old.rules))


def test_duplicate_jumps_are_reduced_to_one() -> None:
    spec = forward_spec(NET)
    payload = restore_payload(spec, listing("-N FLANNEL-FWD", spec.jump, spec.jump))
    assert payload.splitlines().count("-D" + spec.jump[2:]) == 1


def test_removal() -> None:
    spec = masq_spec(NET, SUB)
    assert removal_payload(spec, listing()) == ""
    payload = removal_payload(spec, listing("-N FLANNEL-POSTRTG", spec.jump, *spec.rules))
    assert payload.splitlines() == ["*nat", "-D" + spec.jump[2:], "-F FLANNEL-POSTRTG",
                                    "-X FLANNEL-POSTRTG", "COMMIT"]
