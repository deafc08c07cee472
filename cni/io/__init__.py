"""Thin I/O shells for the plugin, each over one resource: netlink (`netlink`'s socket,
`link`'s operations), namespaces (`netns`), iptables (`masq`, running the rules
`core.masq_rules` writes), and files (`files`; the state directory, its lock and the IP
reservations in `store`, the attachment records in `records`, flanneld's subnet file in
`subnet_file`). They decide nothing the core can decide, and import nothing from
`flanneld`."""
