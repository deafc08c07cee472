"""A real etcd server (one member) for the tests, the demo and the benchmarks.

`EtcdServer` runs etcd inside a network namespace the caller made (`lab.netns`), listening
on `http://<ip>:<client_port>` (https with client certificate auth when cert/key/ca are
given); its peer port listens on 127.0.0.1 inside a namespace. It logs to
`<data_dir's parent>/<name>.log`, and `start()` raises with the tail of that log when etcd
does not come up in time. `etcd_server(...)` is the factory fixtures wrap:

    @pytest.fixture
    def etcd(namespaces, tmp_path):
        with etcd_server(tmp_path, namespaces.make("pfetcd"), client_port=12379) as server:
            yield server

Run it in the root namespace (netns=None) only on ports nothing else uses.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.netns import run, unique

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def _env() -> dict[str, str]:
    """The environment without ETCD*/ETCDCTL* variables (etcd reads its flags from them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    env["ETCDCTL_API"] = "3"
    return env


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


class EtcdServer:
    """One etcd member; `start`, `stop`, `restart` (same data), `etcdctl`, `compact`.

    With cert and key (and ca, which must have signed the clients' certificates) it serves
    https and requires client certificates; `etcdctl` then presents client_cert/client_key,
    by default the server's own pair (give its certificate the clientAuth usage too)."""

    def __init__(self, netns: str | None, ip: str = "127.0.0.1", client_port: int = 2379,
                 peer_port: int = 2380, *, data_dir: Path, name: str | None = None,
                 cert: Path | None = None, key: Path | None = None, ca: Path | None = None,
                 client_cert: Path | None = None, client_key: Path | None = None,
                 start_timeout: float = 20.0) -> None:
        if (cert is None) != (key is None) or (cert is None) != (ca is None):
            raise ValueError("an https etcd needs cert, key and ca together")
        self.netns = netns
        self.ip = ip
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = Path(data_dir)
        self.name = name or unique("etcd")
        self.cert, self.key, self.ca = cert, key, ca
        self.client_cert = client_cert or cert
        self.client_key = client_key or key
        self.start_timeout = start_timeout
        self.log_path = self.data_dir.parent / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cert else "http"
        return f"{scheme}://{_host(self.ip)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{_host('127.0.0.1' if self.netns else self.ip)}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        cmd = [ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", self.peer_url,
               "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", f"{self.name}={self.peer_url}",
               "--initial-cluster-token", self.name, "--initial-cluster-state", "new",
               # one member: elect itself fast; the minimum lease TTL becomes 1 s
               "--heartbeat-interval", "50", "--election-timeout", "500",
               "--logger", "zap"]
        if self.cert:
            cmd += ["--cert-file", str(self.cert), "--key-file", str(self.key),
                    "--trusted-ca-file", str(self.ca), "--client-cert-auth"]
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    def start(self) -> EtcdServer:
        """Start etcd and wait until it answers; RuntimeError (with its log) if it does not."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=_env(),
                                          start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not self._healthy():
            if self._proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited with status {self._proc.returncode}"
                                   f" while starting; its log ends:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd {self.name} did not answer at {self.url} within "
                                   f"{self.start_timeout:g} s; its log ends:\n{self.log_tail()}")
            time.sleep(0.05)
        return self

    def _healthy(self) -> bool:
        out = self._etcdctl("endpoint", "health", "--command-timeout=1s", timeout=5)
        return out.returncode == 0

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if etcd has not exited within `timeout` seconds."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)  # in case it was stopped
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def send_signal(self, sig: int) -> None:
        """Signal the etcd process (SIGSTOP/SIGCONT make it hang and resume)."""
        if self._proc is None:
            raise RuntimeError(f"etcd {self.name} is not running")
        self._proc.send_signal(sig)

    def restart(self) -> EtcdServer:
        """Stop and start again on the same data dir: keys, leases and revisions survive."""
        self.stop()
        return self.start()

    def _etcdctl(self, *args: str, timeout: float = 15,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:  # noqa: A002
        tls = (["--cacert", str(self.ca), "--cert", str(self.client_cert),
                "--key", str(self.client_key)] if self.cert else [])
        return run(ETCDCTL, "--endpoints", self.url, *tls, *args, netns=self.netns,
                   check=False, timeout=timeout, env=_env(), input=input)

    def etcdctl(self, *args: str, timeout: float = 15, input: str | None = None) -> str:  # noqa: A002
        """etcdctl's stdout (v3 API, this server, its netns); RuntimeError when it fails."""
        out = self._etcdctl(*args, timeout=timeout, input=input)
        if out.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed ({out.returncode}): "
                               f"{out.stderr.strip()}")
        return out.stdout

    def compact(self, revision: int) -> None:
        """Drop the history before `revision` (watches from earlier revisions then fail)."""
        self.etcdctl("compact", str(revision), "--physical")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def etcd_server(base_dir: Path, netns: str | None = None, ip: str = "127.0.0.1",
                client_port: int = 2379, peer_port: int = 2380, keep_data: bool = False,
                **kw: Any) -> Iterator[EtcdServer]:
    """A started EtcdServer with its data dir and log under `base_dir`; on exit it is
    stopped and (unless keep_data) its data dir and log are removed."""
    name = kw.pop("name", None) or unique("etcd")
    server = EtcdServer(netns, ip, client_port, peer_port, data_dir=Path(base_dir) / name,
                        name=name, **kw)
    try:
        with server:
            yield server
    finally:
        if not keep_data:
            shutil.rmtree(server.data_dir, ignore_errors=True)
            server.log_path.unlink(missing_ok=True)
