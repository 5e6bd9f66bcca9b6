"""One garbage collection run: lease, leftovers, mark, guarded sweeps, report.

The order of a run (see ``docs/gc.md``):

1. take the lease (one run at a time on all nodes) and record the run;
2. finish the files an interrupted run doomed (``gc_doomed`` rows: rows already gone);
3. mark in SQL (``registry.gc.store_mark.mark``);
4. sweep manifests (parents and subjects first), then unused links, then blobs: each batch
   is decided again in its own write transaction under the digest locks, rows before files;
5. bytes no row names: files of deleted manifests, then orphans found by walking
   ``blobs/``, each doomed under the locks too;
6. abandoned uploads, old pins; the run's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from registry.gc import store_doom, store_lease, store_mark, store_runs
from registry.meta.changes import ChangeHook
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, AdminChange, Trail, traced
from storage.digest import Digest, InvalidDigest
from storage.driver import StorageDriver
from storage.layout import blob_path
from storage.uploads import UploadStore

log = logging.getLogger("wharf.gc")
T = TypeVar("T")

LEASE_TTL = 60.0
HEARTBEAT_EVERY = 5.0
BATCH = 500
WALK_BATCH = 1000
DELETE_STREAMS = 8
SEEN_KEEP = 7 * 24 * 3600.0


class GCBusy(Exception):
    """Another run holds the lease."""


class LeaseLost(Exception):
    """This run's lease expired (the process stalled): it stops before deleting files."""


@dataclass(frozen=True, slots=True)
class GCOptions:
    """What a run is asked to do."""

    dry_run: bool = False
    delete_untagged: bool = False
    untagged_age: float | None = None  # seconds; with delete_untagged
    grace: float = 3600.0
    upload_age: float | None = 7 * 24 * 3600.0  # None: leave uploads alone
    walk: bool = True  # look for orphan files in storage
    batch: int = BATCH  # candidates decided per transaction


@dataclass
class GCResult:
    """What a run did (or, dry, would do)."""

    dry_run: bool = False
    manifests_deleted: int = 0
    manifests_spared: int = 0
    links_deleted: int = 0
    blobs_deleted: int = 0
    blobs_spared: int = 0
    orphan_files_deleted: int = 0
    leftover_files_deleted: int = 0
    uploads_purged: int = 0
    bytes_reclaimed: int = 0
    live_manifests: int = 0
    live_blobs: int = 0
    mark_seconds: float = 0.0
    sweep_seconds: float = 0.0
    duration_seconds: float = 0.0
    would_delete: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[str, int, int], None]


def _default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _died_here(holder: str) -> bool:
    """Whether ``holder`` (``host:pid:nonce``) was a process of this host that is gone
    (a run killed here is taken over at once instead of when its lease expires)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _digest_of_path(path: str) -> str | None:
    """``blobs/sha256/ab/<hex>/data`` -> ``sha256:<hex>``."""
    parts = path.split("/")
    if len(parts) != 5 or parts[0] != "blobs" or parts[4] != "data":
        return None
    try:
        return str(Digest.parse(f"{parts[1]}:{parts[3]}"))
    except InvalidDigest:
        return None


def _path_of(digest: str) -> str:
    return blob_path(Digest.parse(digest))


def _batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _parents_first(found: store_mark.MarkResult) -> list[store_mark.ManifestCandidate]:
    """Candidates ordered so that a parent index or subject comes before what it keeps."""
    by_id = {m.id: m for m in found.manifests}
    incoming: dict[int, int] = dict.fromkeys(by_id, 0)
    outgoing: dict[int, list[int]] = {}
    for a, b in found.edges:
        if a in by_id and b in by_id and a != b:
            outgoing.setdefault(a, []).append(b)
            incoming[b] += 1
    ready = [i for i, n in incoming.items() if n == 0]
    ordered: list[store_mark.ManifestCandidate] = []
    while ready:
        current = ready.pop()
        ordered.append(by_id[current])
        for nxt in outgoing.get(current, ()):
            incoming[nxt] -= 1
            if incoming[nxt] == 0:
                ready.append(nxt)
    done = {m.id for m in ordered}
    ordered += [m for m in found.manifests if m.id not in done]  # no cycles in practice
    return ordered


class Collector:
    """Runs garbage collection against a database and a storage driver."""

    def __init__(
        self,
        db: Database,
        driver: StorageDriver,
        hooks: Sequence[ChangeHook] = (),
        holder: str | None = None,
        progress: Progress | None = None,
        roots: Sequence[store_mark.KeepRoots] = (),
        removed: Sequence[store_doom.Removed] = (),
        trail: Trail = NO_TRAIL,
    ) -> None:
        self.db = db
        self.trail = trail  # the audit log: a run's start recorded with its row
        self.driver = driver
        self.uploads = UploadStore(driver)
        self.hooks = tuple(hooks)
        self.holder = holder or _default_holder()
        self.progress = progress
        self.roots = tuple(roots)  # what features keep besides the tags (store_mark)
        self.removed = tuple(removed)  # told what the sweep deletes (store_doom.Removed)
        self.run_id: int | None = None
        self._phase = "starting"
        self._done = 0
        self._total = 0
        self._lease_ok_at = 0.0
        self._lost = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, options: GCOptions, trigger: str) -> int:
        """Take the lease (real runs) and record the run; :class:`GCBusy` if taken."""
        now = time.time()
        if not options.dry_run:
            current = await self.db.run_read(store_lease.lease_holder, now)
            dead = current if current is not None and _died_here(current) else None
            taken = await self.db.run_write(
                store_lease.acquire_lease, self.holder, now, LEASE_TTL, dead
            )
            if not taken:
                raise GCBusy("another garbage collection is running")
            self._lease_ok_at = time.monotonic()
        opts = asdict(options)

        def started(run_id: int) -> AdminChange:
            details = {"run": run_id, "trigger": trigger, "dry_run": options.dry_run}
            return AdminChange("gc.run.start", f"gc:{run_id}", details={**details, "options": opts})

        self.run_id = await self.db.run_write(
            traced(store_runs.start_run, self.trail, started),
            self.holder,
            trigger,
            options.dry_run,
            opts,
            now,
        )
        if not options.dry_run:
            await self.db.run_write(
                store_lease.renew_lease, self.holder, now, LEASE_TTL, self.run_id
            )
        return self.run_id

    async def execute(self, options: GCOptions) -> GCResult:
        """Run a started run to its end; records the result (or the error)."""
        assert self.run_id is not None
        started = time.monotonic()
        result = GCResult(dry_run=options.dry_run)
        beat = asyncio.create_task(self._heartbeat(options.dry_run))
        try:
            await self._run(options, result)
        except BaseException as e:
            result.duration_seconds = time.monotonic() - started
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.db.run_write(
                        store_runs.finish_run,
                        self.run_id,
                        "failed",
                        result.summary(),
                        f"{type(e).__name__}: {e}",
                        time.time(),
                    )
                )
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(BaseException):
                await beat
            if not options.dry_run:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.db.run_write(store_lease.release_lease, self.holder))
        result.duration_seconds = time.monotonic() - started
        await self.db.run_write(
            store_runs.finish_run, self.run_id, "done", result.summary(), None, time.time()
        )
        log.info(
            "garbage collection %s%s: %d manifests, %d blobs, %d links, %d orphan files, "
            "%d bytes in %.1fs",
            self.run_id,
            " (dry run)" if options.dry_run else "",
            result.manifests_deleted,
            result.blobs_deleted,
            result.links_deleted,
            result.orphan_files_deleted,
            result.bytes_reclaimed,
            result.duration_seconds,
        )
        return result

    async def run(self, options: GCOptions, trigger: str = "cli") -> GCResult:
        await self.start(options, trigger)
        return await self.execute(options)

    # -- progress and lease ------------------------------------------------------------

    def _set(self, phase: str, done: int = 0, total: int = 0) -> None:
        self._phase, self._done, self._total = phase, done, total
        if self.progress is not None:
            self.progress(phase, done, total)

    def _advance(self, n: int) -> None:
        self._set(self._phase, self._done + n, self._total)

    async def _heartbeat(self, dry_run: bool) -> None:
        assert self.run_id is not None
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            now = time.time()
            progress = {"phase": self._phase, "done": self._done, "total": self._total}
            try:
                await self.db.run_write(store_runs.progress_run, self.run_id, progress, now)
                if not dry_run:
                    if await self.db.run_write(
                        store_lease.renew_lease, self.holder, now, LEASE_TTL, self.run_id
                    ):
                        self._lease_ok_at = time.monotonic()
                    else:
                        self._lost = True
            except Exception as e:  # the database may be briefly away: try again
                log.warning("gc heartbeat failed: %s", e)

    def _check_lease(self) -> None:
        """Before deleting files: the lease must be ours with time to spare."""
        if self._lost or time.monotonic() - self._lease_ok_at > LEASE_TTL / 2:
            raise LeaseLost("the garbage collection lease was lost; stopping")

    # -- the run -----------------------------------------------------------------------

    async def _run(self, options: GCOptions, result: GCResult) -> None:
        assert self.run_id is not None
        run_id = self.run_id
        now = time.time()
        cutoff = now - options.grace
        if not options.dry_run:
            self._set("leftovers")
            leftovers = await self.db.run_write(store_doom.adopt_doomed, run_id)
            if leftovers:
                result.leftover_files_deleted = await self._delete_files(leftovers, run_id)
                result.bytes_reclaimed += sum(s for _, s in leftovers)
        self._set("mark")
        mark_started = time.monotonic()
        untagged_cutoff = now - options.untagged_age if options.untagged_age is not None else None
        mark_opts = store_mark.MarkOptions(cutoff, options.delete_untagged, untagged_cutoff)
        if self.roots:
            log.debug("gc keeps the roots of %s", ", ".join(r.name for r in self.roots))
        found = await self.db.run_read(store_mark.mark, mark_opts, self.roots)
        result.mark_seconds = time.monotonic() - mark_started
        result.live_manifests, result.live_blobs = found.live_manifests, found.live_blobs
        sweep_started = time.monotonic()
        if options.dry_run:
            await self._dry(found, options, result, cutoff)
        else:
            await self._sweep(found, options, result, cutoff, run_id)
        if options.upload_age is not None:
            self._set("uploads")
            purged = await self.uploads.purge(now - options.upload_age, options.dry_run)
            result.uploads_purged = len(purged)
        if not options.dry_run:
            await self.db.run_write(store_doom.prune_seen, now - max(options.grace * 2, SEEN_KEEP))
        result.sweep_seconds = time.monotonic() - sweep_started

    async def _dry(
        self, found: store_mark.MarkResult, options: GCOptions, result: GCResult, cutoff: float
    ) -> None:
        result.manifests_deleted = len(found.manifests)
        result.blobs_deleted = len(found.blobs)
        result.links_deleted = len(found.links)
        # a candidate manifest's bytes go unless another (live) row keeps its digest
        gone_ids = frozenset(m.id for m in found.manifests)
        candidates = sorted({m.digest for m in found.manifests})
        kept = await self.db.run_read(store_doom.kept_digests, candidates, gone_ids)
        files = {m.digest: m.size for m in found.manifests if m.digest not in kept}
        result.bytes_reclaimed = sum(s for _, s in found.blobs) + sum(files.values())
        orphans: list[str] = []
        if options.walk:
            self._set("walk")
            async for batch in self._walk_batches(options.batch):
                known = await self.db.run_read(store_doom.known_digests, [d for d, _, _ in batch])
                for digest, size, mtime in batch:
                    if digest not in known and digest not in files and mtime < cutoff:
                        orphans.append(digest)
                        result.bytes_reclaimed += size
                self._advance(len(batch))
        result.orphan_files_deleted = len(orphans)
        result.would_delete = {
            "manifests": [m.digest for m in found.manifests][:1000],
            "blobs": [d for d, _ in found.blobs][:1000],
            "orphan_files": orphans[:1000],
        }

    async def _sweep(
        self,
        found: store_mark.MarkResult,
        options: GCOptions,
        result: GCResult,
        cutoff: float,
        run_id: int,
    ) -> None:
        ordered = _parents_first(found)
        pending = {m.id for m in ordered}
        deleted_digests: dict[str, int] = {}
        self._set("manifests", 0, len(ordered))
        for batch in _batches(ordered, options.batch):
            deleted, spared = await self.db.run_write(
                store_doom.doom_manifests,
                batch,
                frozenset(pending),
                cutoff,
                self.hooks,
                self.removed,
            )
            pending -= {m.id for m in batch}
            result.manifests_deleted += len(deleted)
            result.manifests_spared += len(spared)
            for d in deleted:
                deleted_digests[d.digest] = d.size
            self._advance(len(batch))
        self._set("links", 0, len(found.links))
        for link_batch in _batches(found.links, options.batch):
            result.links_deleted += await self.db.run_write(
                store_doom.doom_links, link_batch, cutoff, self.removed
            )
            self._advance(len(link_batch))
        self._set("blobs", 0, len(found.blobs))
        for blob_batch in _batches(found.blobs, options.batch):
            doomed = await self.db.run_write(
                store_doom.doom_blobs, blob_batch, run_id, cutoff, self.removed
            )
            result.blobs_spared += len(blob_batch) - len(doomed)
            await self._delete_files(doomed, run_id)
            result.blobs_deleted += len(doomed)
            result.bytes_reclaimed += sum(s for _, s in doomed)
            self._advance(len(blob_batch))
        # the bytes of deleted manifests, unless another row still names them
        self._set("manifest files", 0, len(deleted_digests))
        items = sorted(deleted_digests.items())
        for file_batch in _batches(items, options.batch):
            stats = [(d, s, await self._mtime(d)) for d, s in file_batch]
            present = [(d, s, m) for d, s, m in stats if m is not None]
            doomed = await self.db.run_write(
                store_doom.doom_files, present, run_id, cutoff, self.roots
            )
            await self._delete_files(doomed, run_id)
            result.bytes_reclaimed += sum(s for _, s in doomed)
            self._advance(len(file_batch))
        if options.walk:
            self._set("walk")
            async for walk_batch in self._walk_batches(options.batch):
                known = await self.db.run_read(
                    store_doom.known_digests, [d for d, _, _ in walk_batch]
                )
                unknown = [b for b in walk_batch if b[0] not in known and b[2] < cutoff]
                if unknown:
                    doomed = await self.db.run_write(
                        store_doom.doom_files, unknown, run_id, cutoff, self.roots
                    )
                    await self._delete_files(doomed, run_id)
                    result.orphan_files_deleted += len(doomed)
                    result.bytes_reclaimed += sum(s for _, s in doomed)
                self._advance(len(walk_batch))

    async def _mtime(self, digest: str) -> float | None:
        try:
            return (await self.driver.stat(_path_of(digest))).modified
        except Exception:
            return None

    async def _walk_batches(self, size: int) -> Any:
        batch: list[tuple[str, int, float]] = []
        async for info in self.driver.walk("blobs"):
            digest = _digest_of_path(info.path)
            if digest is None:
                continue
            batch.append((digest, info.size, info.modified))
            if len(batch) >= max(size, WALK_BATCH // 10):
                yield batch
                batch = []
        if batch:
            yield batch

    async def _delete_chunk(self, paths: list[str]) -> set[str]:
        """Delete files (several chunks at once: deletes wait on the disk or the network);
        on a local filesystem, also their emptied directories."""
        failed = set(await self.driver.delete_many(paths))
        local = getattr(self.driver, "local_path", None)
        if callable(local):
            gone = [Path(local(p)) for p in paths if p not in failed]
            await asyncio.to_thread(_remove_empty_dirs_of, gone)
        return failed

    async def _delete_files(self, doomed: Sequence[tuple[str, int]], run_id: int) -> int:
        """Delete doomed files, then their ``gc_doomed`` rows; returns how many went."""
        if not doomed:
            return 0
        self._check_lease()
        paths = {_path_of(d): d for d, _ in doomed}
        ordered = list(paths)
        step = max(1, -(-len(ordered) // DELETE_STREAMS))
        chunks = [ordered[i : i + step] for i in range(0, len(ordered), step)]
        failed: set[str] = set()
        for part in await asyncio.gather(*(self._delete_chunk(c) for c in chunks)):
            failed.update(part)
        done = [d for p, d in paths.items() if p not in failed]
        for p in failed:
            log.warning("gc could not delete %s; the next run tries again", p)
        await self.db.run_write(store_doom.forget_doomed, done, run_id)
        return len(done)


def _remove_empty_dirs_of(paths: list[Path]) -> None:
    for path in paths:
        _remove_empty_dirs(path.parent, levels=1)


def _remove_empty_dirs(directory: Path, levels: int) -> None:
    """``rmdir`` (never a recursive delete: an upload may be moving a file in)."""
    for _ in range(levels):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
