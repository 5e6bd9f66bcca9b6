"""Wharf: an OCI Distribution v2 registry."""
