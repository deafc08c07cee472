"""cni.core.attachment: the per-attachment record ADD writes for DEL, CHECK and GC."""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Interface

import pytest

from cni.core.attachment import (
    NAME_LIMIT,
    Attachment,
    Record,
    fit_filename,
    record_filename,
    record_from_json,
)

OWNER = Attachment("ctr1", "eth0")
RECORD = Record(OWNER, "/run/netns/pod", IPv4Interface("10.1.17.5/24"), "veth0123abcd", "cni0",
                "PYFL-0123456789abcdef0123456")


@pytest.mark.parametrize("record", [RECORD, Record(OWNER, "", RECORD.address, "veth0", "br0",
                                                   None)])
def test_round_trip(record: Record) -> None:
    assert record_from_json(record.to_json()) == record


def test_json_keys() -> None:
    assert json.loads(RECORD.to_json()) == {
        "containerID": "ctr1", "ifname": "eth0", "netns": "/run/netns/pod",
        "address": "10.1.17.5/24", "hostVeth": "veth0123abcd", "bridge": "cni0",
        "masqChain": "PYFL-0123456789abcdef0123456"}


def test_missing_masq_chain_reads_as_none() -> None:
    raw = json.loads(RECORD.to_json())
    del raw["masqChain"]
    assert record_from_json(json.dumps(raw)) == dataclasses.replace(RECORD, masq_chain=None)


def without(key: str) -> str:
    raw = json.loads(RECORD.to_json())
    del raw[key]
    return json.dumps(raw)


@pytest.mark.parametrize("text", [
    "", "{", RECORD.to_json()[:-5], "null", "42", '"text"', "[]", "{}",
    *(without(k) for k in ("containerID", "ifname", "netns", "address", "hostVeth", "bridge")),
    RECORD.to_json().replace("10.1.17.5/24", "10.1.17.500/24"),
    RECORD.to_json().replace("10.1.17.5/24", "fd00::5/64"),
])
def test_garbage_is_none(text: str) -> None:
    assert record_from_json(text) is None


def test_filename() -> None:
    assert record_filename(OWNER) == "ctr1:eth0"


@pytest.mark.parametrize("length", [1, NAME_LIMIT, NAME_LIMIT + 1, 5000, 200_000])
def test_names_fit_a_file_name_and_stay_distinct(length: int) -> None:
    name = "c" * length
    fitted = fit_filename(name)
    assert len(fitted.encode()) <= NAME_LIMIT
    assert (fitted == name) == (length <= NAME_LIMIT)
    assert fit_filename(name + "d") != fitted
    assert record_filename(Attachment(name, "eth0")) != record_filename(Attachment(name, "eth1"))


def test_a_record_of_foreign_or_nested_text_is_none() -> None:
    assert record_from_json("[" * 100_000) is None
    assert record_from_json('{"containerID": 5}') is None
