"""The CNI plugin's warm path: flanneld runs `pyflannel --serve SOCKET` as its child and
keeps it running (started again RESTART_DELAY after it exits) until flanneld stops.

The plugin's own executable serves, so the calls run the plugin's code (flanneld and
the plugin share formats, not code). The server exits by itself within a second once
flanneld is gone, so a killed flanneld leaves no server behind; calls under way finish.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading

log = logging.getLogger("flanneld.cni")

RESTART_DELAY = 1.0     # seconds
STOP_WAIT = 5.0         # seconds the server has to stop on SIGTERM


def find_plugin(explicit: str) -> str | None:
    """The pyflannel executable: `explicit`, else beside flanneld (a virtualenv), in the
    build's and the image's layouts, on PATH, or where runtimes look for plugins."""
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(sys.executable))
    candidates = [os.path.join(here, "pyflannel"),
                  os.path.join(os.path.dirname(here), "pyflannel", "pyflannel"),
                  os.path.join(os.path.dirname(here), "cni", "pyflannel"),
                  shutil.which("pyflannel") or "", "/opt/cni/bin/pyflannel"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


class CniWorker:
    def __init__(self, plugin: str, socket: str) -> None:
        self.cmd = [plugin, "--serve", socket]
        self.stopped = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._supervise, name="cni-worker", daemon=True)

    def start(self) -> None:
        log.info("serving CNI calls on %s with %s", self.cmd[2], self.cmd[0])
        self.thread.start()

    def _supervise(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                if self.stopped.is_set():
                    return
                try:
                    self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL)
                except OSError as e:
                    log.error("cannot start the CNI worker %s: %s; calls run cold",
                              self.cmd[0], e.strerror or e)
                    return
            code = self.proc.wait()
            if not self.stopped.is_set():
                log.warning("the CNI worker exited with %s; starting it again in %g s",
                            code, RESTART_DELAY)
                self.stopped.wait(RESTART_DELAY)

    def stop(self) -> None:
        with self.lock:
            self.stopped.set()
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
