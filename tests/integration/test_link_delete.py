"""`cni.io.link.delete` against the kernel: it returns once the link is gone.

The kernel's acknowledgement of a deletion comes only after it has waited for pending RCU
callbacks; `delete` returns as soon as the link is gone from the namespace instead, while
the request waits in a thread of its own. These tests hold it to what the callers rely on:
when it returns the link and its veth peer are gone and the name is free, and a deletion
the kernel refuses is still an error naming the link, with the link left in place.
"""

from __future__ import annotations

import pytest

from cni.core.errors import KERNEL_FAILURE, CNIError
from cni.io import link
from lab.netns import inside, run

pytestmark = pytest.mark.integration


def test_a_veth_and_its_peer_are_gone_and_the_name_free_when_delete_returns(namespaces):
    node, pod = namespaces.make("pfld"), namespaces.make("pfld")
    for _ in range(3):
        run("ip", "link", "add", "pfldv", "type", "veth", "peer", "name", "eth0",
            "netns", pod, netns=node)
        run("ip", "link", "set", "pfldv", "up", netns=node)
        with inside(namespaces.path(node)):
            nl = link.Netlink()
            try:
                assert link.delete(nl, "pfldv") is True
                assert link.find(nl, "pfldv") is None
                assert link.delete(nl, "pfldv") is False        # gone already
            finally:
                nl.close()
        assert run("ip", "link", "show", "eth0", netns=pod, check=False).returncode != 0
    # The name is free at once: the loop made the pair again under it, twice.


def test_a_deletion_the_kernel_refuses_is_an_error_naming_the_link(namespaces):
    node = namespaces.make("pfld")
    with inside(namespaces.path(node)):
        nl = link.Netlink()
        try:
            with pytest.raises(CNIError) as refused:
                link.delete(nl, "lo")          # loopback cannot be deleted
            assert refused.value.code == KERNEL_FAILURE
            assert "delete lo" in refused.value.msg
            assert link.find(nl, "lo") is not None
        finally:
            nl.close()


def test_no_name_is_no_link(namespaces):
    node = namespaces.make("pfld")
    with inside(namespaces.path(node)):
        nl = link.Netlink()
        try:
            assert link.delete(nl, "") is False     # the kernel's EINVAL: nothing to delete
        finally:
            nl.close()
