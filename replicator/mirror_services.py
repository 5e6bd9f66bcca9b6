"""The pull-through mirror's service wrappers for manifests and uploads: a mirrored
repository's manifests and tags come from its upstream (cached in ``mirror_manifests``, a
tag checked again once older than the mirror's ``ttl``, the cached one served when the
upstream cannot be reached); pushes and deletes under a mirrored prefix are refused with
``DENIED``. The blobs' wrapper is in :mod:`replicator.mirror_blobs`."""

from __future__ import annotations

import logging
import time
from typing import Any

from registry.content.manifests import parse_manifest
from registry.content.names import parse_reference
from registry.errors import ManifestUnknown, RegistryError, Unavailable
from registry.meta.records import ManifestRecord
from registry.service.manifests import ManifestService
from registry.service.uploads import UploadService
from replicator.errors import RemoteError, RemoteNotFound
from replicator.mirror_store import MirroredManifest, MirrorStore
from replicator.mirror_upstreams import Mirrors
from storage.digest import Digest, InvalidDigest

log = logging.getLogger("wharf.mirror")


class Delegating:
    """Attributes not set on the wrapper are the wrapped service's (state set later on
    the wrapper, such as another feature's guard, stays on the wrapper)."""

    _inner: Any

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _referenced(body: bytes, media_type: str) -> list[tuple[str, int]] | None:
    """(digest, size) of the blobs a fetched manifest references (an index: none, its
    children are cached manifests of their own); None if it cannot be read, which keeps
    its repository whole in GC (:class:`replicator.mirror_store.MirrorRoots`)."""
    try:
        parsed = parse_manifest(body, media_type or None)
    except RegistryError:
        return None
    return [(str(d.digest), d.size) for d in parsed.blobs]


def _record(m: MirroredManifest) -> ManifestRecord:
    return ManifestRecord(m.digest, m.media_type, m.size)


class MirroredManifests(Delegating, ManifestService):
    def __init__(self, inner: ManifestService, mirrors: Mirrors, store: MirrorStore) -> None:
        self._inner = inner
        self.mirrors = mirrors
        self.store = store

    async def put(
        self, repository: str, reference: str, body: bytes, content_type: str | None
    ) -> Any:
        self.mirrors.refuse_writes(repository)
        return await ManifestService.put(self, repository, reference, body, content_type)

    async def delete(self, repository: str, reference: str) -> None:
        self.mirrors.refuse_writes(repository)
        await ManifestService.delete(self, repository, reference)

    async def resolve(self, repository: str, reference: str) -> ManifestRecord:
        found = self.mirrors.find(repository)
        if found is None:
            return await ManifestService.resolve(self, repository, reference)
        upstream, remote = found
        try:
            tag, digest = parse_reference(reference)
        except InvalidDigest:
            raise ManifestUnknown(detail={"reference": reference[:200]}) from None
        key = str(digest) if digest is not None else str(tag)
        cached = await self.store.get(repository, key)
        if cached is not None and (digest or time.time() - cached.checked_at < upstream.ttl):
            return _record(cached)
        try:
            if cached is not None:
                head = await upstream.client.head_manifest(remote, key)
                if head is not None and head.digest == cached.digest:
                    await self.store.checked(repository, key)
                    return _record(cached)
            fetched = await upstream.client.get_manifest(remote, key)
        except RemoteNotFound:
            raise ManifestUnknown(detail={"reference": reference}) from None
        except RemoteError as e:
            if cached is not None:
                log.info(
                    "upstream %s unreachable, serving cached %s: %s", upstream.client.url, key, e
                )
                # asked again after another ttl, not on every pull while the upstream is down
                await self.store.checked(repository, key)
                return _record(cached)
            raise Unavailable(f"upstream {upstream.client.url}: {e}") from None
        actual = Digest.of(fetched.body, digest.algorithm if digest else "sha256")
        if (digest is not None and actual != digest) or (
            fetched.digest and fetched.digest != str(actual)
        ):
            raise Unavailable(f"upstream manifest {key} does not match its digest")
        await self.blobs.put(fetched.body, actual.algorithm)
        size = len(fetched.body)
        references = [str(actual)] if tag is None else [str(actual), tag]
        blobs = _referenced(fetched.body, fetched.media_type)
        await self.store.fetched(
            repository, references, str(actual), fetched.media_type, size, blobs
        )
        return ManifestRecord(str(actual), fetched.media_type, size)

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        found = self.mirrors.find(repository)
        if found is None:
            return await ManifestService.tags(self, repository, limit, last)
        try:
            names = sorted(await found[0].client.tags(found[1]))
        except RemoteError as e:
            raise Unavailable(f"upstream {found[0].client.url}: {e}") from None
        names = [n for n in names if not last or n > last]
        return names[:limit] if limit is not None else names


class MirroredUploads(Delegating, UploadService):
    def __init__(self, inner: UploadService, mirrors: Mirrors) -> None:
        self._inner = inner
        self.mirrors = mirrors

    async def start(self, repository: str, upload_id: str | None = None) -> str:
        self.mirrors.refuse_writes(repository)
        return await UploadService.start(self, repository, upload_id)

    async def monolithic(self, repository: str, *args: Any, **kw: Any) -> int:
        self.mirrors.refuse_writes(repository)
        return await UploadService.monolithic(self, repository, *args, **kw)
