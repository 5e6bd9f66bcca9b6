"""Usage kept current, and quotas enforced, in the transaction of every change.

:class:`QuotaAccounting` is a change hook (``MetadataStore.add_hook``): a blob linked or
mounted and a manifest pushed count their digest in the repository's project (once per
project); a blob unlinked and a manifest deleted uncount it when no repository of the
project holds it any more. Its :meth:`~QuotaAccounting.removed` is GC's removal callback
(``start_gc(..., removed=...)``): the sweep deletes links and manifests in SQL of its own
and hands over their digests in its deleting transaction.

A digest new to a project raises its usage with the usage row locked (the UPDATE of an
upsert) and then reads the quota: should the new usage exceed it, :class:`QuotaExceeded`
is raised, which rolls the whole change back (nothing becomes visible). Concurrent pushes
into one project queue on that row, so a quota is never exceeded (the bound is 0).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Connection

from registry.content.names import project_of
from registry.meta.changes import Change
from registry.meta.db import after_commit
from registry.quotas import store
from registry.quotas.errors import QuotaExceeded
from registry.request_context import RequestInfo
from registry.sizes import format_size

log = logging.getLogger("wharf.quotas")

THRESHOLDS = (80, 100)  # percent of the quota: an event when usage crosses one upwards
ACTIONS = {80: "quota_warning", 100: "quota_exceed"}  # Harbor's names for the two


@dataclass(frozen=True, slots=True)
class QuotaEvent:
    """Usage crossed ``threshold`` percent of the quota with a push to ``repository``."""

    action: str
    project: str
    threshold: int
    usage: int
    quota: int
    repository: str
    digest: str
    request: RequestInfo | None

    def target(self) -> dict[str, object]:
        return {
            "project": self.project,
            "repository": self.repository,
            "digest": self.digest,
            "threshold": self.threshold,
            "usage": self.usage,
            "quota": self.quota,
        }


# writes an event in the change's transaction
Notify = Callable[[Connection, QuotaEvent], None]
# the events feature's ``OutboxHook.record(conn, action, repository, target, request)``
Record = Callable[[Connection, str, str, dict[str, object], RequestInfo | None], None]


def outbox_notify(record: Record) -> Notify:
    """A quota event as an outbox event (``action``: quota_warning or quota_exceed)."""

    def notify(conn: Connection, event: QuotaEvent) -> None:
        record(conn, event.action, event.repository, event.target(), event.request)

    return notify


class QuotaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "wharf_quota_refused",
            "Pushes refused because they would exceed a project's quota",
            registry=registry,
        )
        self.crossed = Counter(
            "wharf_quota_crossed",
            "Times a project's usage crossed a threshold of its quota (80, 100 percent)",
            ["threshold"],
            registry=registry,
        )


def crossed(before: int, after: int, quota: int) -> list[int]:
    """The thresholds (percent of ``quota``) usage passed going from ``before`` to ``after``."""
    return [t for t in THRESHOLDS if before * 100 < t * quota <= after * 100]


class QuotaAccounting:
    """The change hook and GC removal callback of the quota feature."""

    def __init__(
        self,
        default_project: str,
        metrics: QuotaMetrics | None = None,
        notify: Sequence[Notify] = (),
    ) -> None:
        self.default = default_project
        self.metrics = metrics
        self.notify = tuple(notify)

    def __call__(self, conn: Connection, change: Change) -> None:
        if change.kind == "tag":
            return  # a tag moves or goes; the manifest stays
        project = project_of(change.repository, self.default)
        if change.action == "delete":
            store.release(conn, [(project, change.digest)], self.default)
            return
        added = store.add(conn, project, change.digest, change.size)
        if added is None or added.quota is None:
            return
        if added.size > 0 and added.after > added.quota:  # adding nothing never refuses
            if self.metrics is not None:
                self.metrics.refused.inc()
            log.warning(
                "quota: refused %s@%s: project %s would use %s of its %s",
                change.repository,
                change.digest,
                project,
                format_size(added.after),
                format_size(added.quota),
            )
            raise QuotaExceeded(project, added.quota, added.before, added.size)
        for threshold in crossed(added.before, added.after, added.quota):
            self._crossed(conn, change, added, threshold)

    def _reached(self, project: str, threshold: int, usage: int, quota: int) -> None:
        """Log and count a crossing once its push has committed."""
        if self.metrics is not None:
            self.metrics.crossed.labels(str(threshold)).inc()
        log.warning(
            "quota: project %s reached %d%% of its quota (%s of %s)",
            project,
            threshold,
            format_size(usage),
            format_size(quota),
        )

    def _crossed(
        self, conn: Connection, change: Change, added: store.Added, threshold: int
    ) -> None:
        assert added.quota is not None
        quota = added.quota
        after_commit(conn, lambda: self._reached(added.project, threshold, added.after, quota))
        event = QuotaEvent(
            ACTIONS[threshold],
            added.project,
            threshold,
            added.after,
            added.quota,
            change.repository,
            change.digest,
            change.request,
        )
        for notify in self.notify:
            notify(conn, event)

    def removed(self, conn: Connection, digests: Sequence[str]) -> None:
        """GC deleted links, manifests or blobs of ``digests`` (in this transaction):
        uncount them where no repository of the project holds them any more."""
        if digests:
            store.release(conn, store.holders(conn, digests), self.default)


def gc_removed(default_project: str) -> QuotaAccounting:
    """What GC calls in its deleting transactions (``start_gc(..., removed=[x.removed])``
    and ``wharf gc``): usage goes down with what the sweep deletes."""
    return QuotaAccounting(default_project)
