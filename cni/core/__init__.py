"""The plugin's deciding logic: pure Python, no I/O.

Modules here import no `os`, `socket`, `subprocess`, `pyroute2`, `time` or `random`;
they take what they need (file text, environment mappings, random bytes) as arguments.
A unit test enforces the rule.
"""
