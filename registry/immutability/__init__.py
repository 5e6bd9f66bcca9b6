"""Immutable tags per project (issue #16): see docs/immutability.md."""
