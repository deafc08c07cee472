"""The network config: etcd's `<prefix>/config`, seeded from --net-config-path's file when
etcd has none.

The file is read and validated at start (`read_file`), before etcd is touched. `fetch`
does the round trips through a narrow store: read the key; if it is absent, create it
from the file's text in a transaction that succeeds only while the key does not exist,
so that of several nodes starting together exactly one writes and the others get what
it wrote. A config already in etcd is never overwritten; if it means another network
than the file, a warning says how. Unit tests drive it with `io.memory.MemoryRegistry`; the
daemon with `io.etcd.EtcdRegistry` (both `core.registry.ConfigStore`s).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .core.config import NetworkConfig, differences, parse
from .core.errors import ConfigError
from .core.registry import ConfigStore

log = logging.getLogger("flanneld")


@dataclass(frozen=True)
class ConfigFile:
    """A network config file, validated: its text is what goes into etcd."""

    path: str
    text: str
    config: NetworkConfig


def read_file(path: str) -> ConfigFile:
    """The file at `path`, parsed as etcd's config would be; ConfigError naming the file
    when it cannot be read or is not a valid network config."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the network config file {path}: "
                          f"{e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"the network config file {path} is not UTF-8: {e}") from None
    try:
        return ConfigFile(path, text, parse(text))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def fetch(store: ConfigStore, file: ConfigFile | None, key: str) -> NetworkConfig | None:
    """The network config at `key` (etcd's `<prefix>/config`); None while it is absent and
    there is no file to write there. ConfigError when etcd's config is invalid;
    EtcdUnavailable passes through."""
    text = store.get_network_config()
    if text is None and file is not None:
        created, text = store.create_network_config(file.text)
        if created:
            log.info("no network config at %s: wrote the one from %s", key, file.path)
        else:
            log.info("another node wrote the network config at %s first", key)
    if text is None:
        return None
    config = parse(text)
    if file is not None and (diff := differences(config, file.config)):
        log.warning("the network config at %s differs from %s (%s, etcd's first); using "
                    "etcd's, which is never overwritten: change it there", key, file.path,
                    "; ".join(diff))
    return config
