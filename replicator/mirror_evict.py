"""Evicting what the pull-through mirrors cached (issue #16).

Every cached manifest (:mod:`replicator.mirror_store`: its digest and the tags naming
it) remembers when it was last pulled: set when it is fetched, moved on by each manifest
GET through :class:`PullTimes` (buffered in memory, written in batches every half
second: a pull is never slowed or failed by it). Manifest GETs only: clients GET the
manifest of every image they pull, so its blobs go with it.

:class:`Evictor` removes, per upstream (``proxy``, each ``mirrors[]`` entry), the cached
manifests nobody pulled for its ``maxage`` and, with ``maxbytes`` set, the least recently
pulled others until the bytes its cache holds (each manifest and blob counted once) are
at most that; a repository no configured mirror serves any more gets the default
``maxage`` (7 days). Eviction only deletes the mirror's rows: the bytes stay until
garbage collection, no longer kept by :class:`replicator.mirror_store.MirrorRoots`,
reclaims them (those local content references stay). A manifest evicted and asked for
again is fetched from its upstream again. Content pushed here is never touched: the
mirror's rows name only what it fetched.

Runs every ``mirroreviction.interval`` in every process (no lease): the deletes are
conditional (:mod:`replicator.mirror_evict_store`), so runs at once in several processes
or nodes evict each manifest once and never one pulled meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from registry.config import Settings
from registry.meta.db import Database
from registry.periodic import Clock
from replicator.mirror_evict_store import CachedManifest, cached, evict
from replicator.mirror_store import MirrorStore

log = logging.getLogger("wharf.mirror")

DEFAULT_MAXAGE = 7 * 86400.0
SHOWN = 100  # evicted manifests listed in a run's result


@dataclass(frozen=True, slots=True)
class Policy:
    """What an upstream's cache may hold: ``prefix`` "" is the whole registry (``proxy``)."""

    prefix: str
    maxage: float = DEFAULT_MAXAGE
    maxbytes: int | None = None

    def serves(self, repository: str) -> bool:
        return not self.prefix or repository.startswith(self.prefix + "/")


def policies(settings: Settings) -> list[Policy]:
    """The upstreams' policies, longest prefix first (the one serving a repository)."""
    found = [Policy(m.prefix.strip("/"), m.maxage, m.maxbytes) for m in settings.mirrors]
    if settings.proxy.remoteurl:
        found.append(Policy("", settings.proxy.maxage, settings.proxy.maxbytes))
    return sorted(found, key=lambda p: -len(p.prefix))


def serving(rules: list[Policy], repository: str) -> Policy | None:
    return next((p for p in rules if p.serves(repository)), None)


@dataclass
class Evicted:
    repository: str
    digest: str
    reason: str  # "age" or "bytes"
    pulled_at: float


@dataclass
class EvictionResult:
    dry_run: bool
    cached: int = 0  # manifests cached before the run
    evicted: list[Evicted] = field(default_factory=list)  # planned (dry run) or done
    bytes: int = 0  # bytes no manifest still cached references
    by_reason: Tally[str] = field(default_factory=Tally)

    def summary(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cached": self.cached,
            "evicted": len(self.evicted),
            "evicted_by_age": self.by_reason["age"],
            "evicted_by_bytes": self.by_reason["bytes"],
            "bytes": self.bytes,
            "manifests": [
                {
                    "repository": e.repository,
                    "digest": e.digest,
                    "reason": e.reason,
                    "pulled_at": e.pulled_at,
                }
                for e in self.evicted[:SHOWN]
            ],
        }


def _digests(m: CachedManifest) -> Iterable[tuple[str, int]]:
    yield m.digest, m.size
    yield from m.blobs.items()


class _Holdings:
    """Bytes a set of cached manifests holds, each digest counted once."""

    def __init__(self, manifests: Iterable[CachedManifest]) -> None:
        self.refs: Tally[str] = Tally()
        self.sizes: dict[str, int] = {}
        self.total = 0
        for m in manifests:
            self.add(m)

    def add(self, m: CachedManifest) -> None:
        for digest, size in _digests(m):
            if not self.refs[digest]:
                self.sizes[digest] = size
                self.total += size
            self.refs[digest] += 1

    def remove(self, m: CachedManifest) -> int:
        """Drop ``m``; the bytes only it held."""
        freed = 0
        for digest, _ in _digests(m):
            self.refs[digest] -= 1
            if not self.refs[digest]:
                freed += self.sizes.pop(digest)
                del self.refs[digest]
        self.total -= freed
        return freed


def plan(
    manifests: list[CachedManifest], rules: list[Policy], now: float
) -> list[tuple[CachedManifest, str]]:
    """What to evict, least recently pulled first: (manifest, reason)."""
    groups: dict[Policy, list[CachedManifest]] = {}
    default = Policy("")
    for m in manifests:
        groups.setdefault(serving(rules, m.repository) or default, []).append(m)
    victims: list[tuple[CachedManifest, str]] = []
    for policy, group in groups.items():
        group.sort(key=lambda m: m.pulled_at)
        cutoff = now - policy.maxage
        kept = [m for m in group if m.pulled_at >= cutoff]
        victims += [(m, "age") for m in group if m.pulled_at < cutoff]
        if policy.maxbytes is None:
            continue
        held = _Holdings(kept)
        for m in kept:
            if held.total <= policy.maxbytes:
                break
            held.remove(m)
            victims.append((m, "bytes"))
    return sorted(victims, key=lambda v: v[0].pulled_at)


class EvictionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.evicted = Counter(
            "wharf_mirror_evicted",
            "Manifests the pull-through mirror's eviction removed from its cache, by reason",
            ["reason"],
            registry=registry,
        )
        self.bytes = Counter(
            "wharf_mirror_evicted_bytes",
            "Bytes no cached manifest referenced any more after an eviction (GC reclaims "
            "them unless local content uses them)",
            registry=registry,
        )
        self.runs = Counter("wharf_mirror_eviction_runs", "Mirror eviction runs", registry=registry)
        self.errors = Counter(
            "wharf_mirror_eviction_errors", "Mirror eviction runs that failed", registry=registry
        )


class Evictor:
    """One eviction run at a time in this process (:meth:`run`)."""

    def __init__(
        self,
        db: Database,
        rules: list[Policy],
        metrics: EvictionMetrics | None = None,
        pulls: PullTimes | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.db = db
        self.rules = rules
        self.metrics = metrics
        self.pulls = pulls
        self.clock = clock
        self._lock = asyncio.Lock()

    async def run(self, dry_run: bool = False) -> EvictionResult:
        async with self._lock:
            if self.pulls is not None:  # this process's pulls written first
                await self.pulls.flush()
            return await self._run(dry_run)

    async def _run(self, dry_run: bool) -> EvictionResult:
        started = time.monotonic()
        manifests = await self.db.run_read(cached)
        result = EvictionResult(dry_run, cached=len(manifests))
        victims = plan(manifests, self.rules, self.clock())
        if not dry_run and victims:
            rows = [(m.repository, m.digest, m.pulled_at) for m, _ in victims]
            await self.db.run_write(evict, rows)
            # what was pulled meanwhile stayed: read again to tell what went
            left = {(m.repository, m.digest) for m in await self.db.run_read(cached)}
            victims = [(m, r) for m, r in victims if (m.repository, m.digest) not in left]
        held = _Holdings(manifests)
        for m, reason in victims:
            result.bytes += held.remove(m)
            result.evicted.append(Evicted(m.repository, m.digest, reason, m.pulled_at))
            result.by_reason[reason] += 1
        if not dry_run and self.metrics is not None:
            self.metrics.runs.inc()
            for reason, n in result.by_reason.items():
                self.metrics.evicted.labels(reason).inc(n)
            self.metrics.bytes.inc(result.bytes)
        log.info(
            "mirror eviction%s: %d of %d cached manifests (%d by age, %d by bytes), "
            "%d bytes, in %.2fs",
            " (dry run)" if dry_run else "",
            len(result.evicted),
            result.cached,
            result.by_reason["age"],
            result.by_reason["bytes"],
            result.bytes,
            time.monotonic() - started,
        )
        return result


class PullTimes:
    """When each mirrored manifest was last pulled, buffered in memory and written every
    ``interval`` seconds. :meth:`pulled` (a pull listener) never blocks, never raises and
    never touches the database; times still buffered when the process is killed are
    lost (the manifest then looks pulled a little earlier)."""

    def __init__(
        self, store: MirrorStore, rules: list[Policy], interval: float = 0.5, limit: int = 10_000
    ) -> None:
        self.store = store
        self.rules = rules
        self.interval = interval
        self.limit = limit
        self.pending: dict[tuple[str, str], float] = {}
        self.dropped = 0

    def pulled(
        self,
        kind: str,
        repository: str,
        digest: str,
        media_type: str,
        size: int,
        tag: str | None,
        content: bytes | None,
    ) -> None:
        """A manifest or blob GET (called by the handlers)."""
        try:
            if kind != "manifest" or serving(self.rules, repository) is None:
                return
            key = (repository, digest)
            if key not in self.pending and len(self.pending) >= self.limit:
                self.dropped += 1
                return
            self.pending[key] = time.time()
        except Exception:  # never fail a pull
            log.exception("recording a mirror pull")

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        try:
            await self.store.pulled([(r, d, at) for (r, d), at in batch.items()])
        except BaseException:
            for key, at in batch.items():  # again next time (newer times win)
                self.pending[key] = max(at, self.pending.get(key, 0.0))
            raise

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing mirror pull times")
