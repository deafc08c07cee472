"""A local lab for pyflannel: namespaces as hosts and the CNI plugin run as a runtime runs it.

Used by the demo and by the tests; it never touches the root network namespace.
"""
