"""Records written in the transaction of the change they describe.

:class:`AuditHook` is a change hook (``MetadataStore.add_hook``): every manifest push
(``manifest.push``, or ``tag.move`` when the push moved an existing tag to another
manifest), manifest, tag and blob delete writes its record on the change's connection,
so the change and its record commit together or not at all. Blob pushes and mounts are
not recorded: the manifest push that follows sums them up (see docs/audit.md).

:class:`AuditTrail` is the :class:`~registry.meta.trail.Trail` handed to the features
that make administrative changes (projects, members, quotas, robots, users, rules, GC
runs): they call it with their transaction's connection.
"""

from __future__ import annotations

from sqlalchemy import Connection

from registry.audit import records, store
from registry.meta.changes import Change
from registry.meta.trail import AdminChange


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


AuditTrail = audit_trail
