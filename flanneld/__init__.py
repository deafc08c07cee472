"""pyflannel's node daemon: subnet leases in etcd, the subnet file, the tun device and the
UDP backend, in flannel's formats. It never imports `cni`, and `cni` never imports it.
"""
