"""Records of what has no transaction (logins, token grants, pulls), written in batches.

:meth:`AuditBuffer.add` only appends to a list (safe from any thread: the token
service answers in a worker thread): a login or a pull is not slowed by the database.
A task writes what gathered every ``interval`` seconds (0.5 s) in one transaction, and
once more at shutdown. Records still in memory when the process is killed are lost
(at most ``interval`` seconds of them); pushes, deletes and administrative changes are
not, they are written with the change. Identical pulls (same caller, address, client,
repository, reference and digest) within one interval become one record with their
``count``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from registry.audit import store
from registry.audit.records import Row
from registry.meta.db import Database

log = logging.getLogger("wharf.audit")

PullKey = tuple[Any, ...]


class AuditBuffer:
    """Gathers records in memory and writes them in batches."""

    def __init__(self, interval: float = 0.5, limit: int = 50_000) -> None:
        self.interval = interval
        self.limit = limit
        self.db: Database | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._rows: list[Row] = []
        self._pulls: dict[PullKey, Row] = {}

    def add(self, row: Row) -> None:
        """Keep ``row`` for the next batch (dropped, and counted, beyond ``limit``)."""
        with self._lock:
            if len(self._rows) + len(self._pulls) >= self.limit:
                self.dropped += 1
                return
            self._rows.append(row)

    def add_pull(self, row: Row) -> None:
        """A pull: counted into an identical one of this interval if there is one."""
        key = tuple(
            row[c]
            for c in ("actor", "addr", "useragent", "action", "repository", "reference", "digest")
        )
        with self._lock:
            found = self._pulls.get(key)
            if found is not None:
                found["details"]["count"] += 1
                return
            if len(self._rows) + len(self._pulls) >= self.limit:
                self.dropped += 1
                return
            row["details"]["count"] = 1
            self._pulls[key] = row

    def take(self) -> list[Row]:
        with self._lock:
            rows, self._rows = self._rows, []
            pulls, self._pulls = self._pulls, {}
        return sorted([*rows, *pulls.values()], key=lambda r: float(r["time"]))

    async def flush(self) -> int:
        """Write what gathered; the number of records written (0 if the write failed:
        they are dropped, logged)."""
        rows = self.take()
        if not rows or self.db is None:
            return 0
        try:
            await self.db.run_write(store.write_many, rows)
        except Exception as e:
            self.dropped += len(rows)
            log.warning("writing %d audit records failed (dropped): %s", len(rows), e)
            return 0
        return len(rows)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()
