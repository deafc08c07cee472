"""Helpers the integration and end-to-end tests share: namespaces, plugin runs."""
