"""Changes to repository content, handed to hooks inside the transaction that makes them.

Anything that must happen exactly when a change commits (an event in the outbox, a search
index row) is a :class:`ChangeHook`: :class:`~registry.meta.store.MetadataStore` calls each
hook with the open connection after the change's own SQL, so the hook's writes commit or
roll back with it. Hooks must be quick and touch only the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from sqlalchemy import Connection

from registry.meta.records import NewManifest
from registry.request_context import RequestInfo

Action = Literal["push", "mount", "delete"]
Kind = Literal["blob", "manifest", "tag"]


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change: a blob pushed, mounted or deleted (unlinked from the
    repository), a manifest pushed or deleted, a tag deleted. ``request`` is None for
    changes made outside an HTTP request."""

    action: Action
    kind: Kind
    repository: str
    digest: str
    media_type: str = ""
    size: int = 0
    tag: str | None = None
    from_repository: str | None = None
    manifest: NewManifest | None = None
    request: RequestInfo | None = None
    details: dict[str, object] = field(default_factory=dict)
    # a manifest push: the rows it wrote (hooks need not look them up again)
    repository_id: int | None = None
    manifest_id: int | None = None


class ChangeHook(Protocol):
    """Called with the open write connection after a change's SQL, before the commit."""

    def __call__(self, conn: Connection, change: Change) -> None: ...
