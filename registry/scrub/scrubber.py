"""The scrub itself (issue #18): every stored blob and manifest, in digest order from a
cursor, read back from storage through its digest's hash at a limited rate and compared.

Bad content (``missing``: no file; ``corrupt``: the bytes hash to another digest) is
checked a second time, then quarantined (the core's ``blob_quarantine``: lookups answer
BLOB_UNKNOWN / MANIFEST_UNKNOWN from then on), counted (``wharf_scrub_bad_total``),
logged and, with the events feature's ``record``, written as a ``scrub_bad`` event per
repository holding it, in the same transaction. A quarantined digest whose bytes check
good again (put back by an operator) is released.

One run at a time across processes and nodes: the ``scrub`` lease row
(``registry/meta/lease.py``), renewed with each progress save. A run saves its cursor
(the last digest checked) every couple of seconds; stopped (:meth:`Scrubber.stop`, the
CLI on SIGTERM or Ctrl-C) it saves it at once and ends ``stopped``; killed, the next run
finds it ``interrupted``. Either is taken up again from its cursor by a run started with
``resume``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from registry.meta.db import Database
from registry.scrub import store_runs
from registry.scrub.store_runs import Item, Record
from storage.blobs import BlobNotFound, BlobStore
from storage.digest import Digest, InvalidDigest

log = logging.getLogger("wharf.scrub")

LEASE_TTL = 60.0  # seconds; renewed with every progress save
SAVE_EVERY = 2.0  # seconds between progress saves (cursor, counts, lease)
BATCH = 200  # digests read from the database at a time
HASH_IN_THREAD = 256 * 1024  # chunks at least this big are hashed off the event loop

Progress = Callable[[dict[str, Any]], None]


class ScrubBusy(Exception):
    """Another run holds the scrub lease."""


class _Stopped(Exception):
    pass


class ScrubMetrics:
    """Counters of what runs in this process checked and found."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.bad = Counter(
            "wharf_scrub_bad",
            "Stored objects the scrub found bad, by reason (corrupt, missing)",
            ["reason"],
            registry=registry,
        )
        self.checked = Counter(
            "wharf_scrub_checked", "Stored objects the scrub read back", registry=registry
        )
        self.checked_bytes = Counter(
            "wharf_scrub_checked_bytes", "Bytes the scrub read back", registry=registry
        )
        self.runs = Counter(
            "wharf_scrub_runs", "Scrub runs ended, by state", ["state"], registry=registry
        )
        for reason in ("corrupt", "missing"):
            self.bad.labels(reason)


@dataclass
class Finding:
    digest: str
    kind: str
    reason: str
    detail: str | None
    repositories: list[str] = field(default_factory=list)
    new: bool = True  # not in quarantine before

    def as_dict(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "digest": self.digest,
            "kind": self.kind,
            "reason": self.reason,
            "detail": self.detail,
            "repositories": self.repositories,
        }


@dataclass
class ScrubResult:
    run_id: int
    state: str  # done, stopped, failed
    checked: int
    checked_bytes: int
    bad: int
    total: int | None
    seconds: float
    found: list[Finding] = field(default_factory=list)  # by this invocation
    released: list[str] = field(default_factory=list)
    error: str | None = None
    resumed_from: str = ""  # the cursor this invocation started after ("": the start)
    session_checked: int = 0  # objects this invocation checked

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "state": self.state,
            "resumed_from": self.resumed_from,
            "session_checked": self.session_checked,
            "checked": self.checked,
            "checked_bytes": self.checked_bytes,
            "bad": self.bad,
            "total": self.total,
            "seconds": round(self.seconds, 3),
            "found": [f.as_dict() for f in self.found],
            "released": self.released,
            "error": self.error,
        }


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scrubber:
    """One run: :meth:`start` (takes the lease, records or resumes the run), then
    :meth:`execute`."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        rate: int,
        *,
        metrics: ScrubMetrics | None = None,
        record: Record | None = None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
        save_every: float = SAVE_EVERY,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.rate = max(0, int(rate))  # bytes per second; 0: no limit
        self.metrics = metrics
        self.record = record
        self.progress = progress
        self.clock = clock
        self.batch = batch
        self.save_every = save_every
        self.holder = holder_name()
        self.run_id: int | None = None
        self._stop = asyncio.Event()
        # the run's counts (since it first started: a resumed run goes on counting)
        self.cursor = ""
        self.checked = 0
        self.checked_bytes = 0
        self.bad = 0
        self.total: int | None = None
        # the rate limit: bytes read since ``_since`` (monotonic)
        self._since = 0.0
        self._read = 0

    async def start(self, trigger: str, resume: bool = False) -> int:
        """Take the lease and record the run (``resume``: take the newest one up again if
        it did not finish); its id. :class:`ScrubBusy` if another run holds the lease."""
        now = self.clock()
        if not await self.db.run_write(store_runs.acquire_lease, self.holder, now, LEASE_TTL):
            other = await self.db.run_read(store_runs.lease_holder, now)
            raise ScrubBusy(f"a scrub is running ({other or 'another process'})")
        try:
            run_id = await self.db.run_write(
                store_runs.start_run, self.holder, trigger, self.rate, resume, now
            )
            await self.db.run_write(store_runs.renew_lease, self.holder, now, LEASE_TTL, run_id)
            run = await self.db.run_read(store_runs.get_run, run_id)
        except BaseException:
            await self.db.run_write(store_runs.release_lease, self.holder)
            raise
        assert run is not None
        self.run_id = run_id
        self.cursor = run["cursor"]
        self.checked, self.checked_bytes, self.bad = (
            run["checked"],
            run["checked_bytes"],
            run["bad"],
        )
        self.total = run["total"]
        return run_id

    def stop(self) -> None:
        """End the run at the next object (or within the current one): its cursor is
        saved, its state ``stopped``; ``resume`` goes on from there."""
        self._stop.set()

    async def execute(self) -> ScrubResult:
        """Check everything after the cursor; the lease is released at the end."""
        assert self.run_id is not None, "start() first"
        started = time.monotonic()
        self._since, self._read = time.monotonic(), 0
        found: list[Finding] = []
        released: list[str] = []
        state, error = "done", None
        resumed_from, checked_before = self.cursor, self.checked
        saved = time.monotonic()
        try:
            while True:
                items = await self.db.run_read(store_runs.next_items, self.cursor, self.batch)
                if not items:
                    break
                held = await self.db.run_read(
                    store_runs.quarantined_among, [i.digest for i in items]
                )
                for item in items:
                    if self._stop.is_set():
                        raise _Stopped
                    finding = await self._check_twice(item)
                    if finding is not None:
                        if await self._quarantine(item, finding):
                            self.bad += 1
                            found.append(finding)
                    elif item.digest in held and await self._release(item.digest):
                        released.append(item.digest)
                    self.checked += 1
                    self.cursor = item.digest
                    if self.metrics is not None:
                        self.metrics.checked.inc()
                    if time.monotonic() - saved >= self.save_every:
                        await self._save()
                        saved = time.monotonic()
        except _Stopped:
            state = "stopped"
        except asyncio.CancelledError:
            await self._end("stopped", None)
            raise
        except Exception as e:
            log.exception("scrub run %s failed", self.run_id)
            state, error = "failed", f"{type(e).__name__}: {e}"
        await self._end(state, error)
        return ScrubResult(
            self.run_id,
            state,
            self.checked,
            self.checked_bytes,
            self.bad,
            self.total,
            time.monotonic() - started,
            found,
            released,
            error,
            resumed_from,
            self.checked - checked_before,
        )

    async def _end(self, state: str, error: str | None) -> None:
        assert self.run_id is not None
        try:
            await self._save(renew=False)
            await self.db.run_write(store_runs.finish_run, self.run_id, state, error, self.clock())
        finally:
            await self.db.run_write(store_runs.release_lease, self.holder)
        if self.metrics is not None:
            self.metrics.runs.labels(state).inc()
        self._report(state)

    async def _save(self, renew: bool = True) -> None:
        assert self.run_id is not None
        now = self.clock()
        await self.db.run_write(
            store_runs.progress_run,
            self.run_id,
            self.cursor,
            self.checked,
            self.checked_bytes,
            self.bad,
            now,
        )
        if renew and not await self.db.run_write(
            store_runs.renew_lease, self.holder, now, LEASE_TTL, self.run_id
        ):
            raise RuntimeError("lost the scrub lease (another process took it over)")
        self._report("running")

    def _report(self, state: str) -> None:
        if self.progress is not None:
            self.progress(
                {
                    "run_id": self.run_id,
                    "state": state,
                    "checked": self.checked,
                    "checked_bytes": self.checked_bytes,
                    "bad": self.bad,
                    "total": self.total,
                    "cursor": self.cursor,
                }
            )

    async def _check_twice(self, item: Item) -> Finding | None:
        """What is wrong with ``item``'s bytes, read twice to be sure (a push may have
        replaced bad bytes between the first read and now); None if good."""
        first = await self._check(item)
        if first is None:
            return None
        return await self._check(item, counted=False)

    async def _check(self, item: Item, counted: bool = True) -> Finding | None:
        try:
            digest = Digest.parse(item.digest)
        except InvalidDigest:
            return None  # not content-addressed in a way we can check
        hasher = digest.hasher()
        size = 0
        try:
            async for chunk in self.blobs.open(digest):
                if len(chunk) >= HASH_IN_THREAD:
                    await asyncio.to_thread(hasher.update, chunk)
                else:
                    hasher.update(chunk)
                size += len(chunk)
                if counted:
                    self.checked_bytes += len(chunk)
                    if self.metrics is not None:
                        self.metrics.checked_bytes.inc(len(chunk))
                await self._throttle(len(chunk))
        except BlobNotFound:
            return Finding(item.digest, item.kind, "missing", "no stored file")
        actual = f"{digest.algorithm}:{hasher.hexdigest()}"
        if actual != item.digest:
            detail = f"the stored bytes hash to {actual} ({size} bytes; {item.size} recorded)"
            return Finding(item.digest, item.kind, "corrupt", detail)
        return None

    async def _throttle(self, n: int) -> None:
        """Keep to ``rate`` bytes per second on average; stop when asked (mid-object)."""
        if self._stop.is_set():
            raise _Stopped
        if not self.rate:
            return
        self._read += n
        while True:
            ahead = self._read / self.rate - (time.monotonic() - self._since)
            if ahead <= 0:
                return
            try:
                await asyncio.wait_for(self._stop.wait(), min(ahead, 0.5))
            except TimeoutError:
                continue
            raise _Stopped

    async def _release(self, digest: str) -> bool:
        released: bool = await self.db.run_write(store_runs.release_item, digest)
        if released:
            log.warning("scrub: %s checks good again: out of quarantine", digest)
        return released

    async def _quarantine(self, item: Item, finding: Finding) -> bool:
        """Quarantine (and report) ``item``; False if it is gone from the metadata meanwhile
        (collected). An event only when it was not in quarantine already."""

        new, names = await self.db.run_write(
            store_runs.quarantine_item,
            item,
            finding.reason,
            finding.detail,
            self.clock(),
            self.record,
        )
        finding.repositories = names
        finding.new = new
        if not new and not await self.db.run_read(store_runs.quarantined_among, [item.digest]):
            return False  # collected meanwhile
        if self.metrics is not None:
            self.metrics.bad.labels(finding.reason).inc()
        log.error(
            "scrub: %s %s is %s (%s); quarantined%s; repositories: %s",
            item.kind,
            item.digest,
            finding.reason,
            finding.detail,
            "" if new else " already",
            ", ".join(names) or "none",
        )
        return True
