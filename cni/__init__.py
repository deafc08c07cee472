"""pyflannel's CNI plugin.

`cni.core` holds the pure logic (no I/O); `cni.io` holds thin shells over netlink,
namespaces, iptables and the disk; `cni.commands` wires them into ADD, DEL, CHECK,
STATUS and GC. Nothing here imports `flanneld`, and `cni.__main__` imports a
command's module only when that command runs, so VERSION and errors start fast.
"""
