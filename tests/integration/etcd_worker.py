"""A real etcd in a network namespace of the test's, and registries that talk to it.

How a test reaches the namespaced etcd: the registry under test runs in a worker process
started with `ip netns exec <ns> python -c ...` (see `serve`), and the test drives it over
a pipe: each call sends a pickled (method, args) and reads a pickled result or exception
back, so the test body reads like direct use (`registry.create_lease(...)`). The whole
worker, gRPC's own threads included, lives in the namespace, and nothing is added to the
root namespace. Switching a test thread into the namespace with setns would not be
reliable: gRPC opens its connections from threads of its own, created once per process and
kept in whatever namespace their creator was in (and Python 3.11 has no os.setns).
Leases' expirations come from the worker's time.monotonic(), the same clock as the test's.

Used by test_etcd_registry.py (etcd as etcdctl sees it) and test_registry_contract.py (the
contract the in-memory registry shares).
"""

from __future__ import annotations

import os
import pickle
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from flanneld.core.lease_watch import Delete, Put, WatchBatch, WatchBroken
from flanneld.io.etcd import EtcdOptions, EtcdRegistry
from lab.etcd import EtcdServer, etcd_server
from lab.netns import Namespaces, unique

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PORT, PEER_PORT = 12379, 12380  # inside the test's namespaces; not etcd's defaults
TIMEOUT = 2.0  # the registry's request timeout in these tests


# -- the worker: an EtcdRegistry in a process inside the namespace

def serve() -> None:
    """The worker's loop: build the registry from the first message, then answer calls."""
    import logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="worker %(levelname)s %(name)s: %(message)s")
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the replies
    options, timeout = pickle.load(requests)
    registry = EtcdRegistry(options, timeout=timeout)
    watches: dict[int, tuple[queue.Queue, Callable[[], None]]] = {}
    while True:
        try:
            method, args = pickle.load(requests)
        except EOFError:
            break
        try:
            if method == "watch":
                items: queue.Queue = queue.Queue()
                watches[len(watches)] = (items, registry.watch_leases(args[0], items.put))
                result: object = len(watches) - 1
            elif method == "next":
                try:
                    result = watches[args[0]][0].get(timeout=args[1])
                except queue.Empty:
                    result = None
            elif method == "cancel":
                result = watches[args[0]][1]()
            else:
                result = getattr(registry, method)(*args)
            reply: tuple[str, object] = ("ok", result)
        except Exception as e:  # sent back and raised in the test
            reply = ("err", e)
        pickle.dump(reply, replies)
        replies.flush()
    registry.close()


class Worker:
    """The registry's methods, run in a worker process in `netns`; exceptions re-raised."""

    def __init__(self, netns: str, options: EtcdOptions, timeout: float = TIMEOUT) -> None:
        code = "from tests.integration.etcd_worker import serve; serve()"
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send((options, timeout))

    def _send(self, message: object) -> None:
        pickle.dump(message, self.proc.stdin)
        self.proc.stdin.flush()

    def call(self, method: str, *args: object, wait: float = 30.0) -> object:
        self._send((method, args))
        if not select.select([self.proc.stdout], [], [], wait)[0]:
            self.close()
            raise AssertionError(f"the registry worker did not answer {method} in {wait} s")
        status, value = pickle.load(self.proc.stdout)
        if status == "err":
            raise value
        return value

    def __getattr__(self, method: str) -> Callable[..., object]:
        return lambda *args: self.call(method, *args)

    def watch(self, start_revision: int) -> RemoteWatch:
        return RemoteWatch(self, self.call("watch", start_revision))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RemoteWatch:
    """The items a watch's sink received in the worker, in order."""

    def __init__(self, worker: Worker, watch_id: int) -> None:
        self.worker, self.id = worker, watch_id

    def next(self, timeout: float = 5.0) -> WatchBatch | WatchBroken | None:
        return self.worker.call("next", self.id, timeout, wait=timeout + 10)

    def changes(self, count: int, timeout: float = 5.0) -> list[Put | Delete]:
        """The next `count` changes (over as many batches as it takes)."""
        found: list[Put | Delete] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            item = self.next(max(deadline - time.monotonic(), 0.01))
            assert isinstance(item, WatchBatch), f"after {found}: {item}"
            found += item.changes
        return found

    def cancel(self) -> None:
        self.worker.call("cancel", self.id)


# -- fixtures

@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    """One etcd in a namespace of its own for the module's tests."""
    spaces, base = Namespaces(), Path(tempfile.mkdtemp(prefix="pft-etcd-"))
    try:
        with etcd_server(base, spaces.make("pfetcd"), client_port=CLIENT_PORT,
                         peer_port=PEER_PORT) as server:
            yield server
    finally:
        spaces.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_etcd() -> Iterator[Callable[..., EtcdServer]]:
    """A factory of etcd servers, each in a fresh namespace, for tests that stop them."""
    spaces, base = Namespaces(), Path(tempfile.mkdtemp(prefix="pft-etcd-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.callback(spaces.cleanup)
        yield lambda **kw: stack.enter_context(etcd_server(
            base, spaces.make("pfetcd"), client_port=CLIENT_PORT, peer_port=PEER_PORT, **kw))


@pytest.fixture
def open_registry() -> Iterator[Callable[..., Worker]]:
    """A factory of registries (workers) on a server; all closed after the test."""
    workers: list[Worker] = []

    def open_(server: EtcdServer, prefix: str | None = None, **options: object) -> Worker:
        prefix = prefix or f"/{unique('pft')}/network"
        workers.append(Worker(server.netns, EtcdOptions((server.url,), prefix, **options)))
        return workers[-1]

    yield open_
    for worker in workers:
        worker.close()


@pytest.fixture
def prefix() -> str:
    return f"/{unique('pft')}/network"


@pytest.fixture
def registry(etcd, prefix, open_registry) -> Worker:
    return open_registry(etcd, prefix)


def about(expiration: float | None, seconds: float) -> bool:
    return expiration is not None and abs(expiration - time.monotonic() - seconds) < 5
