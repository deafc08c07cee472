"""The plugin's deciding logic: pure Python, no I/O.

Modules here import only each other and pure standard-library modules: no `os`,
`socket`, `subprocess`, `pyroute2`, `time` or `random`, nor anything of `cni.io`; they
take what they need (file text, environment mappings, listings) as arguments and return
values or text for the shells to act on. tests/unit/test_layering.py enforces the rule.
"""
