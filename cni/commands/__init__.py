"""One module per CNI command; `cni.__main__` imports only the one it runs."""
