"""cni.core.masq_rules: the per-pod masquerade chain as iptables-restore input, and what an
`iptables -t nat -S` listing says about it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from cni.core.masq_rules import is_present, removal_payload, setup_payload

CHAIN = "PYFL-0123456789abcdef0123456"
OTHER = "PYFL-ffffffffffffffffffffff0"
IP = IPv4Address("10.244.1.2")
C = '-m comment --comment "pyflannel: cbr0 ctr1"'
NETWORKS = (IPv4Network("10.244.0.0/16"), IPv4Network("10.245.0.0/16"))

# As `iptables -t nat -S` prints the rules setup_payload makes (and other rules around them).
LISTING = f"""-P PREROUTING ACCEPT
-P POSTROUTING ACCEPT
-N {CHAIN}
-N {OTHER}
-A POSTROUTING -s 10.244.1.2/32 {C} -j {CHAIN}
-A POSTROUTING -s 10.244.1.3/32 -m comment --comment "pyflannel: cbr0 ctr2" -j {OTHER}
-A {CHAIN} -d 10.244.0.0/16 {C} -j ACCEPT
-A {CHAIN} ! -d 224.0.0.0/4 {C} -j MASQUERADE
"""


def test_setup_payload_is_the_chain_its_exemptions_masquerade_and_the_jump() -> None:
    assert setup_payload(CHAIN, IP, NETWORKS, "pyflannel: cbr0 ctr1") == (
        "*nat\n"
        f":{CHAIN} - [0:0]\n"
        f"-A {CHAIN} -d 10.244.0.0/16 {C} -j ACCEPT\n"
        f"-A {CHAIN} -d 10.245.0.0/16 {C} -j ACCEPT\n"
        f"-A {CHAIN} ! -d 224.0.0.0/4 {C} -j MASQUERADE\n"
        f"-A POSTROUTING -s 10.244.1.2/32 {C} -j {CHAIN}\n"
        "COMMIT\n")


def test_removal_deletes_the_jumps_then_flushes_and_deletes_the_chain() -> None:
    assert removal_payload(CHAIN, LISTING) == (
        "*nat\n"
        f"-D POSTROUTING -s 10.244.1.2/32 {C} -j {CHAIN}\n"
        f"-F {CHAIN}\n"
        f"-X {CHAIN}\n"
        "COMMIT\n")


def test_removal_of_what_is_half_there_or_gone() -> None:
    jump_only = f"-P POSTROUTING ACCEPT\n-A POSTROUTING -s 10.244.1.2/32 {C} -j {CHAIN}\n"
    assert removal_payload(CHAIN, jump_only) == (
        f"*nat\n-D POSTROUTING -s 10.244.1.2/32 {C} -j {CHAIN}\nCOMMIT\n")
    assert removal_payload(CHAIN, f"-N {CHAIN}\n") == f"*nat\n-F {CHAIN}\n-X {CHAIN}\nCOMMIT\n"
    assert removal_payload(CHAIN, "-P POSTROUTING ACCEPT\n") == ""
    assert removal_payload(CHAIN, "") == ""
    # another chain whose name starts with ours is not ours
    assert removal_payload(CHAIN[:-1], LISTING) == ""


def test_presence_needs_the_chain_and_the_jump_for_that_ip() -> None:
    assert is_present(CHAIN, IP, LISTING)
    assert not is_present(CHAIN, IPv4Address("10.244.1.3"), LISTING)
    assert not is_present(CHAIN, IP, LISTING.replace(f"-N {CHAIN}\n", ""))
    assert not is_present(CHAIN, IP, "\n".join(line for line in LISTING.splitlines()
                                               if not line.startswith("-A POSTROUTING")))
    assert not is_present(CHAIN, IP, "")


addresses = st.integers(0, 2**32 - 1).map(IPv4Address)
networks = st.tuples(addresses, st.integers(0, 32)).map(
    lambda t: IPv4Network((int(t[0]) >> (32 - t[1]) << (32 - t[1]) if t[1] else 0, t[1])))


@given(ip=addresses, exempt=st.lists(networks, min_size=1, max_size=4).map(tuple))
def test_what_setup_adds_reads_as_present_and_removal_removes_it(
        ip: IPv4Address, exempt: tuple[IPv4Network, ...]) -> None:
    """The listing iptables prints after the setup payload (its -A lines, the chain as -N)
    holds the chain; the removal payload deletes exactly the lines the setup added."""
    payload = setup_payload(CHAIN, ip, exempt, "pyflannel: n c")
    added = [line for line in payload.splitlines() if line.startswith("-A ")]
    listing = "\n".join(["-P POSTROUTING ACCEPT", f"-N {CHAIN}", *added, ""])
    assert is_present(CHAIN, ip, listing)
    removal = removal_payload(CHAIN, listing).splitlines()
    assert removal == ["*nat", *("-D" + line[2:] for line in added
                                 if line.startswith("-A POSTROUTING ")),
                       f"-F {CHAIN}", f"-X {CHAIN}", "COMMIT"]
