"""The change hook that creates a missing project when a push lands in it.

It runs in the push's own transaction (blob upload, mount or manifest PUT): a project is
created together with the first write into it, owned by the pusher (the request's actor)
as an owner member, or not at all. Whether the push was allowed was decided before
(the policy: an open registry, ``projects.selfservice``, or a rule giving push there).
Cheap: a project the in-memory directory knows costs one dictionary look-up; a missing
one an ``INSERT .. ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from registry.meta.changes import Change
from registry.projects.directory import ProjectDirectory
from registry.projects.store import ensure_project


class CreateOnPush:
    """A :class:`~registry.meta.changes.ChangeHook`; ``created(name)`` is called (from
    the writing thread, before the commit) for each project it inserted."""

    def __init__(self, directory: ProjectDirectory, created: Callable[[str], None]) -> None:
        self.directory = directory
        self.created = created

    def __call__(self, conn: Connection, change: Change) -> None:
        if change.action not in ("push", "mount"):
            return
        name = self.directory.project_of(change.repository)
        if self.directory.exists(name):
            return
        actor = change.request.actor if change.request is not None else None
        if ensure_project(conn, name, actor, created_by=actor or "push"):
            self.created(name)
