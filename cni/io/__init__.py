"""Thin I/O shells for the plugin: netlink and namespaces (pyroute2), iptables, disk store."""
