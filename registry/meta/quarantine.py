"""The quarantine: content whose stored bytes failed a read-back check (issue #18).

A digest in ``blob_quarantine`` is unknown to every lookup (blob HEAD/GET, mounts,
manifest GET/HEAD by tag or digest, the references a manifest push checks): the NOT
EXISTS of ``queries.not_quarantined`` is folded into those queries, so they cost one
primary-key probe more and no extra statement. Good bytes written for the
digest lift it: an upload's commit (:func:`release` in ``link_blob``'s transaction) or a
manifest push, which writes its bytes over the stored ones first
(``ManifestService.put``).

The core keeps the state; what goes in is decided by the scrub (``registry/scrub/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select

from registry.meta import direct
from registry.meta.queries import upsert_module
from registry.meta.tables import blob_quarantine

REASONS = ("corrupt", "missing")


@dataclass(frozen=True, slots=True)
class Quarantined:
    digest: str
    reason: str
    kind: str
    found_at: float
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "reason": self.reason,
            "kind": self.kind,
            "found_at": self.found_at,
            "detail": self.detail,
        }


@cache
def _release_one() -> Any:
    return delete(blob_quarantine).where(blob_quarantine.c.digest == bindparam("digest"))


@cache
def _is_quarantined() -> Any:
    return select(blob_quarantine.c.digest).where(blob_quarantine.c.digest == bindparam("digest"))


def quarantine(
    conn: Connection, digest: str, reason: str, kind: str, now: float, detail: str | None = None
) -> bool:
    """Put ``digest`` in quarantine (again: reason and time updated); True if it was not."""
    assert reason in REASONS, reason
    was = is_quarantined(conn, digest)
    stmt = upsert_module(conn.dialect.name).insert(blob_quarantine)
    values = {"digest": digest, "reason": reason, "kind": kind, "found_at": now, "detail": detail}
    conn.execute(
        stmt.values(values).on_conflict_do_update(
            index_elements=[blob_quarantine.c.digest],
            set_={"reason": reason, "found_at": now, "detail": detail},
        )
    )
    return not was


def release(conn: Connection, digest: str) -> bool:
    """Lift the quarantine of ``digest`` (its bytes are good again); True if it was in."""
    return direct.execute(conn, _release_one(), {"digest": digest}) > 0


def is_quarantined(conn: Connection, digest: str) -> bool:
    return direct.first(conn, _is_quarantined(), {"digest": digest}) is not None


def listing(conn: Connection, limit: int, after: str = "") -> list[Quarantined]:
    """Quarantined digests in digest order, after ``after``."""
    rows = conn.execute(
        select(blob_quarantine)
        .where(blob_quarantine.c.digest > after)
        .order_by(blob_quarantine.c.digest)
        .limit(limit)
    )
    return [Quarantined(r.digest, r.reason, r.kind, r.found_at, r.detail) for r in rows]


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(blob_quarantine)).scalar_one())


def release_many(conn: Connection, digests: Sequence[str]) -> int:
    """Lift the quarantine of each of ``digests``; how many were in."""
    if not digests:
        return 0
    result = conn.execute(delete(blob_quarantine).where(blob_quarantine.c.digest.in_(digests)))
    return int(result.rowcount)
