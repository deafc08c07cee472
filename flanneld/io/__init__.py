"""The daemon's I/O shells: tun device, netlink, etcd, files and iptables; they call into core."""
