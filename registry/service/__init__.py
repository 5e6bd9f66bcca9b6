"""Use cases: push, pull, mount and delete. The one place that orders storage and metadata."""
