"""Replication between registries and the pull-through mirror. Not built yet."""
