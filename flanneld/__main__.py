"""`flanneld`: parse flags and environment, connect to etcd, run the daemon until SIGTERM.

Exit status: 0 after a clean stop (the lease stays in etcd), 1 on a fatal error (bad
network config in etcd, network full, lease lost to another node, data plane failure), 2
on bad flags (etcd's included) or a bad --net-config-path file (found before etcd is
touched).
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from .core.errors import ConfigError, FlannelError

log = logging.getLogger("flanneld")


def main(argv: list[str] | None = None) -> int:
    from .network_config import read_file
    from .options import parse

    try:
        opts = parse(sys.argv[1:] if argv is None else argv, os.environ)
        config_file = read_file(opts.net_config_path) if opts.net_config_path else None
    except ConfigError as e:
        print(f"flanneld: error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if opts.verbosity > 0 else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from .daemon import Daemon
    from .io.etcd import EtcdOptions, EtcdRegistry

    if opts.verbosity <= 1:  # after pyroute2's import, which resets its logger's level
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
    try:
        registry = EtcdRegistry(EtcdOptions(
            endpoints=opts.etcd_endpoints, prefix=opts.etcd_prefix, cafile=opts.etcd_cafile,
            certfile=opts.etcd_certfile, keyfile=opts.etcd_keyfile,
            username=opts.etcd_username, password=opts.etcd_password))
    except ConfigError as e:  # a bad endpoint URL, half a credential pair, unreadable files
        print(f"flanneld: error: {e}", file=sys.stderr)
        return 2
    try:
        daemon = Daemon(opts, registry, config_file=config_file)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: daemon.request_stop())
        log.info("flanneld starting: etcd %s, prefix %s", ",".join(opts.etcd_endpoints),
                 opts.etcd_prefix)
        try:
            return daemon.run()
        finally:
            registry.close()
    except FlannelError as e:
        log.error("%s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
