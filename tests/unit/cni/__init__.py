"""Unit tests of the CNI plugin: its pure core (cni/core) and its file shells (cni/io)."""
