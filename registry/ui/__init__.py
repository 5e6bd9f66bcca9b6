"""The web UI (issue #8): server-rendered pages under ``/ui/``."""
