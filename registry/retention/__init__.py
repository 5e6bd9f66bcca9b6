"""Tag retention and last-pull times (issue #16): see docs/retention.md."""
