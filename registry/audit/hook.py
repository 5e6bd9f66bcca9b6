"""Records written in the transaction of the change they describe.

:class:`AuditHook` is a change hook (``MetadataStore.add_hook``): every manifest push
(``manifest.push``, or ``tag.move`` when the push moved an existing tag to another
manifest), manifest, tag and blob delete writes its record on the change's connection,
so the change and its record commit together or not at all. Blob pushes and mounts are
not recorded: the manifest push that follows sums them up (see docs/audit.md).

:func:`audit_trail` is the :class:`~registry.meta.trail.Trail` handed to the features
that make administrative changes (projects, members, quotas, robots, users, rules, GC
runs): they call it with their transaction's connection. :func:`cli_trail` is the same
for the commands (``wharf project`` ...), naming the actor ``cli:USER``.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import replace

from sqlalchemy import Connection

from registry.audit import records, store
from registry.config import Settings
from registry.meta.changes import Change
from registry.meta.trail import NO_TRAIL, AdminChange, Trail


class AuditHook:
    """The change hook of the audit log."""

    def __init__(self, default_project: str) -> None:
        self.default = default_project

    def __call__(self, conn: Connection, change: Change) -> None:
        row = records.of_change(change, self.default)
        if row is not None:
            store.write(conn, row)


def audit_trail(conn: Connection, change: AdminChange) -> None:
    """The trail of a registry with an audit log: the change's record, on its connection."""
    store.write(conn, records.of_admin(change))


def command_actor() -> str:
    """Who runs a command: ``cli:`` and the operating system's user name (or uid)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no name for the uid (a container)
        return f"cli:uid {os.getuid()}"


def cli_trail(settings: Settings) -> Trail:
    """The trail of ``wharf project|quota|user|robot|gc`` (given by registry/cli.py):
    their changes recorded as the API's are, the actor ``cli:USER``; ``NO_TRAIL`` with
    the audit log off."""
    if not settings.audit.enabled:
        return NO_TRAIL
    actor = command_actor()

    def trail(conn: Connection, change: AdminChange) -> None:
        if change.request is None and change.actor is None:
            change = replace(change, actor=actor)
        audit_trail(conn, change)

    return trail
