"""The test doubles and the in-memory registry have every member of the protocol they
stand in for, with the same parameters, so that a fake cannot drift from its seam
(mypy checks the shipped implementations statically; this checks the fakes too). What
the members do is held to one contract by tests/integration/test_registry_contract.py."""

from __future__ import annotations

import inspect

import pytest

from flanneld.backends.udp import UdpBackend
from flanneld.core.backend import Backend
from flanneld.core.registry import Registry
from flanneld.io.etcd import EtcdRegistry
from flanneld.io.memory import MemoryRegistry as ShippedMemoryRegistry

from .fakes import FakeBackend, MemoryRegistry


def members(protocol: type) -> dict[str, object]:
    """Each member the protocol declares (its own and its bases'), by name."""
    found: dict[str, object] = {}
    for base in reversed(protocol.__mro__):
        if base is object or base.__name__ in ("Protocol", "Generic"):
            continue
        found.update({name: value for name, value in vars(base).items()
                      if not name.startswith("_")})
    return found


def shape(member: object) -> object:
    if isinstance(member, property):
        return "property"
    return [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]


@pytest.mark.parametrize(("protocol", "implementation"), [
    (Registry, ShippedMemoryRegistry), (Registry, MemoryRegistry), (Registry, EtcdRegistry),
    (Backend, FakeBackend), (Backend, UdpBackend)], ids=lambda x: x.__name__)
def test_an_implementation_has_every_member_of_its_protocol(protocol, implementation) -> None:
    wanted = members(protocol)
    assert set(wanted) <= set(dir(implementation)), set(wanted) - set(dir(implementation))
    for name, member in wanted.items():
        assert shape(inspect.getattr_static(implementation, name)) == shape(member), name
