"""Immutable tags enforced inside the transaction of every push and delete.

:class:`ImmutableTags` is both a push guard (``MetadataStore.add_guard``: called at the
start of a manifest push's transaction, before its rows are written, so the tag still
points at its old manifest) and a change hook (``MetadataStore.add_hook``: after a delete's
SQL, with the tags it removed). It reads the project's rules in that same transaction
(one indexed SELECT), so a rule added on any node holds from the next push.

- a push of ``repo:tag`` that a rule matches, while the tag points at another digest, is
  refused (a first push, or a push of the same digest again, is not a move);
- a tag delete of a matching tag is refused;
- a manifest delete that would remove a matching tag (``Change.details["untagged"]``)
  is refused.

Refusing is raising :class:`~registry.immutability.errors.TagImmutable` (DENIED, naming
the rule), which rolls the whole change back: nothing of it becomes visible.

:class:`ImmutableKeeper` answers which tags a rule holds, for a retention policy, which
must never remove one.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Connection

from registry.content.names import project_of
from registry.immutability import store
from registry.immutability.errors import TagImmutable
from registry.immutability.rules import first_match
from registry.meta.changes import Change

log = logging.getLogger("wharf.immutability")


class ImmutableMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "wharf_immutable_refused",
            "Pushes and deletes refused because they would move or remove an immutable tag",
            ["action"],
            registry=registry,
        )


class ImmutableTags:
    """The push guard and the delete hook of the immutability feature."""

    def __init__(self, default_project: str, metrics: ImmutableMetrics | None = None) -> None:
        self.default = default_project
        self.metrics = metrics

    def guard(self, conn: Connection, change: Change) -> None:
        """Before a manifest push's rows: refuse moving an immutable tag."""
        if change.kind != "manifest" or change.action != "push" or change.tag is None:
            return
        repository, tag = change.repository, change.tag
        project = project_of(repository, self.default)
        rule = first_match(store.rules_of(conn, project), repository, tag)
        if rule is None:
            return
        store.lock_tag(conn, repository, tag)
        current = store.tag_digest(conn, repository, tag)
        if current is not None and current != change.digest:
            self._refuse("push", project, repository, tag, current, change.digest)
            raise TagImmutable(f"push of {change.digest}", project, repository, tag, rule)

    def __call__(self, conn: Connection, change: Change) -> None:
        """After a delete's SQL: refuse removing an immutable tag."""
        if change.action != "delete" or change.kind == "blob":
            return
        if change.kind == "tag":
            removed = [change.tag] if change.tag is not None else []
            what = "tag delete"
        else:
            untagged = change.details.get("untagged")
            removed = [str(t) for t in untagged] if isinstance(untagged, list) else []
            what = f"delete of manifest {change.digest}"
        if not removed:
            return
        repository = change.repository
        project = project_of(repository, self.default)
        rules = store.rules_of(conn, project)
        for tag in removed:
            rule = first_match(rules, repository, tag)
            if rule is not None:
                self._refuse("delete", project, repository, tag, change.digest, None)
                raise TagImmutable(what, project, repository, tag, rule)

    def _refuse(
        self, action: str, project: str, repository: str, tag: str, old: str, new: str | None
    ) -> None:
        if self.metrics is not None:
            self.metrics.refused.labels(action).inc()
        log.warning(
            "immutable: refused %s of %s:%s in project %s (at %s%s)",
            action,
            repository,
            tag,
            project,
            old,
            f", pushing {new}" if new else "",
        )


class ImmutableKeeper:
    """Which tags an immutability rule holds: ``keeper(conn, project, repository, tags)``
    is the set of those of ``tags`` (of ``repository``, in ``project``) that a rule of the
    project matches; a retention policy keeps them whatever its own rules say. Reads the
    rules on ``conn`` (the caller's transaction)."""

    def __call__(
        self, conn: Connection, project: str, repository: str, tags: list[str]
    ) -> set[str]:
        return store.immutable_among(conn, project, repository, tags)
