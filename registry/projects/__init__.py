"""Projects (issue #15): teams own namespaces, with members, roles and quotas."""
