"""Storage quotas and usage per project (issue #15): see docs/quotas.md."""
