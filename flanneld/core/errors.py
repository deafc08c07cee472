"""The daemon's one exception family: fatal configuration errors versus retryable races."""

from __future__ import annotations


class FlannelError(Exception):
    """Base of every error the daemon's core raises; the message names the object."""


class ConfigError(FlannelError):
    """Fatal: the network config in etcd or a flag is wrong; the operator must fix it."""


class LeaseConflict(FlannelError):
    """Retryable: another node created the chosen subnet's key first; list and choose again."""


class SubnetsExhausted(FlannelError):
    """Fatal: no free subnet is left between SubnetMin and SubnetMax."""


class LeaseFormatError(FlannelError):
    """A lease value in etcd is not flannel's JSON; skip that lease (another node's fault)."""


class EtcdUnavailable(FlannelError):
    """Retryable: etcd could not be reached or did not answer in time; try again later."""


class LeaseLost(FlannelError):
    """Fatal: this node's lease vanished and its subnet now belongs to another node."""
