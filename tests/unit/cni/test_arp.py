"""cni.core.arp: the announcement a new pod interface broadcasts."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni.core.arp import announcement, mac_bytes


def test_the_frame_byte_for_byte() -> None:
    frame = announcement("02:11:22:33:44:55", IPv4Address("10.244.1.3"))
    assert frame.hex() == (
        "ffffffffffff" "021122334455" "0806"           # Ethernet: broadcast, from the pod
        "0001" "0800" "06" "04" "0001"                  # ARP: Ethernet/IPv4, request
        "021122334455" "0af40103"                       # sender: the pod's MAC and IP
        "000000000000" "0af40103")                      # target: no MAC, the same IP


@given(st.binary(min_size=6, max_size=6), st.integers(0, 2**32 - 1))
def test_sender_and_target_are_the_pod_for_any_mac_and_ip(raw: bytes, ip: int) -> None:
    frame = announcement(raw.hex(":"), IPv4Address(ip))
    assert len(frame) == 42 and frame[6:12] == frame[22:28] == raw
    assert frame[28:32] == frame[38:42] == IPv4Address(ip).packed


@pytest.mark.parametrize("mac", ["02:11:22:33:44", "02:11:22:33:44:55:66"])
def test_a_mac_of_another_length_is_refused(mac: str) -> None:
    with pytest.raises(ValueError):
        mac_bytes(mac)
