"""The daemon's deciding logic: pure Python, no I/O.

Modules here import no `os`, `socket`, `subprocess`, `fcntl`, `ctypes`, `pyroute2`, etcd
client, `time`, `random` or `pathlib`, and never `cni`. Time comes in as `now: float`
arguments, randomness as an object with `randrange(n)` (a `random.Random` fits), text as
`str`. The shells in `flanneld/io` do the I/O and call in here. A unit test enforces the rule.
"""
