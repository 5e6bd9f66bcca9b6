"""The HTTP API: thin handlers over registry.service."""
