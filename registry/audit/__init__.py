"""The audit log (issue #16): who did what, from where, when: see docs/audit.md."""
