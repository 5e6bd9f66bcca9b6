"""One run of one rule: select repositories and tags, copy them, propagate deletes, and
record the run (started, finished, counters, errors) in the database."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from registry.config import RemoteSettings, ReplicationRuleSettings
from replicator.client import RegistryClient
from replicator.copy import Copier, Counters, MemoryUploadState, UploadState
from replicator.errors import RemoteError, RemoteNotFound
from replicator.rules import (
    bandwidth,
    chunk_size,
    client_for,
    destination,
    literal_repositories,
    repository_selected,
    tag_selected,
)
from replicator.store import ReplicationStore
from replicator.streams import RateLimit

log = logging.getLogger("wharf.replicator")
FULL = "*"  # a pending row for this repository asks for a whole run


def node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _StoredUploads:
    """:class:`UploadState` in the ``replication_uploads`` table, for one rule."""

    def __init__(self, store: ReplicationStore, rule: str) -> None:
        self.store, self.rule = store, rule

    async def upload(self, repository: str, digest: str) -> tuple[str, int] | None:
        return await self.store.upload(self.rule, repository, digest)

    async def save_upload(self, repository: str, digest: str, location: str, offset: int) -> None:
        await self.store.save_upload(self.rule, repository, digest, location, offset)

    async def drop_upload(self, repository: str, digest: str) -> None:
        await self.store.drop_upload(self.rule, repository, digest)


class RuleRunner:
    """Runs a rule between this registry (reached over HTTP at ``local``) and its remote."""

    def __init__(
        self,
        rule: ReplicationRuleSettings,
        local: RemoteSettings,
        store: ReplicationStore | None = None,
        progress: Callable[[Counters], None] | None = None,
    ) -> None:
        self.rule = rule
        self.local = local
        self.store = store
        self.progress = progress
        self.on_bytes: Callable[[int], None] | None = None

    async def run(
        self, trigger: str = "manual", only: list[tuple[str, str]] | None = None
    ) -> tuple[str, Counters]:
        """Run the rule (only the given (repository, tag) pairs, if any); returns
        ("ok" | "failed", counters)."""
        rule = self.rule
        run_id = await self.store.start_run(rule.name, trigger, node_id()) if self.store else None
        state: UploadState = (
            _StoredUploads(self.store, rule.name) if self.store else MemoryUploadState()
        )
        async with client_for(self.local) as local, client_for(rule.remote) as remote:
            source, target = (local, remote) if rule.direction == "push" else (remote, local)
            copier = Copier(
                source,
                target,
                state=state,
                parallel=rule.maxparallel,
                limit=RateLimit(bandwidth(rule)),
                retries=rule.retries,
                chunk_size=chunk_size(rule),
                progress=self.progress,
            )
            try:
                if only is None or any(repo == FULL for repo, _ in only):
                    await self._everything(copier, source, target)
                else:
                    await self._some(copier, source, target, only)
            except RemoteError as e:
                copier.counters.errors.append(str(e))
            except Exception as e:
                log.exception("replication rule %s failed", rule.name)
                copier.counters.errors.append(f"{type(e).__name__}: {e}")
        counters = copier.counters
        status = "failed" if counters.errors else "ok"
        if self.store is not None and run_id is not None:
            await self.store.finish_run(run_id, status, counters.as_dict(), counters.errors)
        log.info(
            "replication %s (%s): %s, %d tags copied, %d skipped, %d blobs copied, %d bytes",
            rule.name,
            trigger,
            status,
            counters.tags_copied,
            counters.tags_skipped,
            counters.blobs_copied,
            counters.bytes,
        )
        return status, counters

    async def _repositories(self, source: RegistryClient) -> list[str]:
        names = literal_repositories(self.rule)
        if names is None:
            names = await source.catalog()
        return sorted(n for n in names if repository_selected(self.rule, n))

    async def _everything(
        self, copier: Copier, source: RegistryClient, target: RegistryClient
    ) -> None:
        slots = asyncio.Semaphore(self.rule.maxparallel)
        jobs: list[Awaitable[None]] = []
        for repo in await self._repositories(source):
            tags = [t for t in await source.tags(repo) if tag_selected(self.rule, t)]
            jobs += [self._copy(copier, slots, repo, t) for t in tags]
            if self.rule.deletes:
                jobs.append(self._prune(copier, target, repo, set(tags)))
        await asyncio.gather(*jobs)

    async def _some(
        self,
        copier: Copier,
        source: RegistryClient,
        target: RegistryClient,
        only: list[tuple[str, str]],
    ) -> None:
        slots = asyncio.Semaphore(self.rule.maxparallel)
        jobs: list[Awaitable[None]] = []
        for repo, tag in dict.fromkeys(only):
            if ":" in tag:  # a manifest deleted by digest (no tag has a colon)
                if repository_selected(self.rule, repo) and self.rule.deletes:
                    jobs.append(self._delete_manifest(copier, source, target, repo, tag))
                continue
            if not (repository_selected(self.rule, repo) and tag_selected(self.rule, tag)):
                continue
            if await source.head_manifest(repo, tag) is not None:
                jobs.append(self._copy(copier, slots, repo, tag))
            elif self.rule.deletes:
                jobs.append(self._delete(copier, target, destination(self.rule, repo), tag))
        await asyncio.gather(*jobs)

    async def _copy(self, copier: Copier, slots: asyncio.Semaphore, repo: str, tag: str) -> None:
        async with slots:
            try:
                await copier.copy_tag(repo, destination(self.rule, repo), tag)
            except RemoteError as e:
                log.warning("replication %s: %s:%s: %s", self.rule.name, repo, tag, e)
                copier.counters.errors.append(f"{repo}:{tag}: {e}")

    async def _prune(
        self, copier: Copier, target: RegistryClient, repo: str, keep: set[str]
    ) -> None:
        """Delete the selected tags the target has and the source no longer has."""
        dst = destination(self.rule, repo)
        try:
            present = [t for t in await target.tags(dst) if tag_selected(self.rule, t)]
        except RemoteError as e:
            copier.counters.errors.append(f"{dst}: listing tags: {e}")
            return
        for tag in present:
            if tag not in keep:
                await self._delete(copier, target, dst, tag)

    async def _delete_manifest(
        self, copier: Copier, source: RegistryClient, target: RegistryClient, repo: str, digest: str
    ) -> None:
        """A manifest deleted by digest at the source goes at the target too (with the
        tags pointing at it there), unless the source has it again."""
        dst = destination(self.rule, repo)
        try:
            if await source.head_manifest(repo, digest) is not None:
                return
            await target.delete_manifest(dst, digest)
        except RemoteNotFound:
            return
        except RemoteError as e:
            copier.counters.errors.append(f"{dst}@{digest}: delete: {e}")
            return
        copier.counters.tags_deleted += 1

    async def _delete(self, copier: Copier, target: RegistryClient, repo: str, tag: str) -> None:
        try:
            await target.delete_manifest(repo, tag)
        except RemoteNotFound:
            return
        except RemoteError:
            # The reference registry deletes manifests by digest only: do that when no
            # other tag at the target points at the same manifest.
            try:
                await self._delete_by_digest(target, repo, tag)
            except RemoteError as e:
                copier.counters.errors.append(f"{repo}:{tag}: delete: {e}")
                return
        copier.counters.tags_deleted += 1

    @staticmethod
    async def _delete_by_digest(target: RegistryClient, repo: str, tag: str) -> None:
        info = await target.head_manifest(repo, tag)
        if info is None:
            return
        for other in await target.tags(repo):
            if other != tag:
                found = await target.head_manifest(repo, other)
                if found is not None and found.digest == info.digest:
                    raise RemoteError(f"{repo}:{other} shares the manifest; tag left in place")
        await target.delete_manifest(repo, info.digest)
