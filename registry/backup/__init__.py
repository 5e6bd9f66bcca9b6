"""Backup and restore of the metadata (issue #18): ``wharf backup DIR`` while the registry
serves (SQLite's online backup, ``pg_dump`` for PostgreSQL), ``wharf restore DIR``."""
