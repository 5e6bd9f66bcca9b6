"""Search and browse (issue #8): facts read at push time, the index hook, the query API."""
