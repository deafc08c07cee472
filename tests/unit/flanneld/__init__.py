"""Unit tests for the daemon's pure core (flanneld/core)."""
