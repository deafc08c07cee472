"""The HTTP endpoint for liveness and inspection (`--healthz-ip`, `--healthz-port`).

    GET /healthz  200 "flanneld is running" while the lease is held and the data plane runs,
                  else 503 with the reason (flannel answers 200 unconditionally)
    GET /metrics  counters and gauges in the Prometheus text format
    GET /leases   the peers this node forwards to, as JSON
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..core.errors import FlannelError

log = logging.getLogger("flanneld.healthz")


class Probe:
    """What the endpoint asks the daemon; each callable must be cheap and thread-safe."""

    def __init__(self, health: Callable[[], str | None], metrics: Callable[[], str],
                 leases: Callable[[], list[dict[str, str]]]) -> None:
        self.health = health      # None when healthy, else why not
        self.metrics = metrics
        self.leases = leases


def _handler(probe: Probe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                problem = probe.health()
                if problem is None:
                    self._send(200, "text/plain", "flanneld is running\n")
                else:
                    self._send(503, "text/plain", f"flanneld is not ready: {problem}\n")
            elif path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", probe.metrics())
            elif path == "/leases":
                self._send(200, "application/json", json.dumps(probe.leases(), indent=1) + "\n")
            else:
                self._send(404, "text/plain", "not found: try /healthz, /metrics or /leases\n")

        def _send(self, code: int, ctype: str, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("healthz: " + format, *args)

    return Handler


class HealthServer:
    """Serves the probe on a daemon thread until `stop`."""

    def __init__(self, ip: str, port: int, probe: Probe) -> None:
        try:
            self._server = ThreadingHTTPServer((ip, port), _handler(probe))
        except OSError as e:
            raise FlannelError(f"cannot listen for /healthz on {ip}:{port}: {e.strerror}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="healthz", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), port

    def start(self) -> None:
        self._thread.start()
        log.info("serving /healthz, /metrics and /leases on http://%s:%d", *self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
