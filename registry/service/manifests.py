"""Pushing, pulling and deleting manifests and tags."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict

from registry.content import mediatypes as mt
from registry.content.manifests import ParsedManifest, parse_manifest
from registry.content.names import parse_reference
from registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    Unavailable,
    Unsupported,
)
from registry.meta.records import ManifestRecord, NewManifest
from registry.meta.store import MetadataStore, MissingReferences
from registry.service.facts import FactsReader, no_facts
from registry.service.pins import DigestBusy, NoPins, Pins
from storage.blobs import BlobNotFound, BlobStore
from storage.digest import Digest, InvalidDigest

log = logging.getLogger("wharf")


class ManifestCache:
    """Manifest bytes by digest, bounded in total size. Content-addressed, so never stale."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, digest: str) -> bytes | None:
        data = self._items.get(digest)
        if data is not None:
            self._items.move_to_end(digest)
        return data

    def put(self, digest: str, data: bytes) -> None:
        if digest in self._items or len(data) > self.max_bytes // 8:
            return
        self._items[digest] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)


def _new_manifest(digest: Digest, body: bytes, parsed: ParsedManifest) -> NewManifest:
    return NewManifest(
        digest=str(digest),
        media_type=parsed.media_type,
        size=len(body),
        artifact_type=parsed.artifact_type,
        subject=str(parsed.subject.digest) if parsed.subject else None,
        annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
        blobs=tuple((str(d.digest), d.size) for d in parsed.blobs),
        children=tuple(str(d.digest) for d in parsed.manifests),
        references=tuple(
            (d.media_type, str(d.digest), d.size) for d in [*parsed.blobs, *parsed.manifests]
        ),
    )


def _reference(reference: str) -> tuple[str | None, Digest | None]:
    """Tag or digest of a PUT or DELETE; DIGEST_INVALID or MANIFEST_INVALID if neither."""
    try:
        return parse_reference(reference)
    except InvalidDigest as e:
        if ":" in reference:
            raise DigestInvalid(str(e)) from None
        raise ManifestInvalid(f"invalid tag {reference[:200]!r}") from None


class ManifestService:
    """Manifests of repositories: bytes in the blob store, everything else in metadata."""

    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        delete_enabled: bool,
        max_size: int,
        pins: Pins | None = None,
        *,
        facts: FactsReader = no_facts,
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.delete_enabled = delete_enabled
        self.max_size = max_size
        self.facts = facts
        self.pins: Pins = pins if pins is not None else NoPins(meta)  # online GC (#7)
        self.cache = ManifestCache()

    async def put(
        self, repository: str, reference: str, body: bytes, content_type: str | None
    ) -> tuple[Digest, ParsedManifest]:
        """Check and store a manifest under a tag or digest reference.

        Data before metadata: the bytes are stored content-addressed first, then the
        manifest row, its references and the tag are written in one transaction (a row
        never names missing bytes). Every check of the manifest itself (its JSON, sizes,
        media types) comes before the bytes are stored, so a hostile manifest leaves
        none. Its references are checked in the transaction: a manifest refused for a
        missing blob or child leaves its bytes unreferenced, as the reference registry's
        storage does, for GC to sweep as an orphan (a check before the bytes would cost
        a database read on every push: half the manifest PUT rate).
        """
        if len(body) > self.max_size:
            raise ManifestInvalid(
                f"manifest is {len(body)} bytes, over the {self.max_size} byte limit", status=413
            )
        tag, ref_digest = _reference(reference)
        parsed = parse_manifest(body, content_type)
        digest = Digest.of(body, ref_digest.algorithm if ref_digest else "sha256")
        if ref_digest is not None and ref_digest != digest:
            raise DigestInvalid(detail={"expected": str(ref_digest), "actual": str(digest)})
        new = _new_manifest(digest, body, parsed)
        await self.blobs.put(body, digest.algorithm)
        details = await self.facts(self.blobs, parsed)  # for the change hooks; never raises

        quarantined = False

        async def store() -> None:
            nonlocal quarantined
            quarantined = await self.meta.put_manifest(repository, new, tag, details=details)

        try:  # waits while a GC is deleting this very digest's (identical) bytes
            await self.pins.while_busy(store)
        except MissingReferences as e:
            raise ManifestBlobUnknown(detail={"missing": e.missing}) from None
        except DigestBusy as e:
            raise Unavailable(f"{e.digest} is being garbage collected; retry") from None
        # The manifest is ours now (GC spares it), but identical bytes found stored
        # above may have been an orphan a GC deleted before this commit: put them back.
        await self.pins.put_back(lambda: self.blobs.put(body, digest.algorithm))
        if quarantined:  # its stored bytes were found bad (#18): good ones over them first
            await self.blobs.put(body, digest.algorithm, overwrite=True)
            await self.meta.release(str(digest))
        self.cache.put(str(digest), body)
        return digest, parsed

    async def resolve(self, repository: str, reference: str) -> ManifestRecord:
        """The manifest a reference names; :class:`ManifestUnknown` if there is none."""
        try:
            tag, digest = parse_reference(reference)
        except InvalidDigest:
            raise ManifestUnknown(detail={"reference": reference[:200]}) from None
        record = await self.meta.resolve(
            repository, tag=tag, digest=str(digest) if digest else None
        )
        if record is None:
            raise ManifestUnknown(detail={"reference": reference})
        return record

    async def content(self, record: ManifestRecord) -> bytes:
        """The stored bytes of a resolved manifest."""
        cached = self.cache.get(record.digest)
        if cached is not None:
            return cached
        digest = Digest.parse(record.digest)
        try:
            data = await self.blobs.get(digest)
        except BlobNotFound:
            raise ManifestUnknown(detail={"digest": record.digest}) from None
        if Digest.of(data, digest.algorithm) != digest:  # bad bytes are never served (#18)
            log.error("manifest %s: the stored bytes do not match their digest", digest)
            raise ManifestUnknown(detail={"digest": record.digest})
        self.cache.put(record.digest, data)
        return data

    @staticmethod
    def check_accept(record: ManifestRecord, accept: list[str]) -> None:
        """Refuse an index to a client whose Accept names manifest types but not its type."""
        if record.media_type not in mt.INDEXES or not accept:
            return
        types = {a.split(";")[0].strip() for value in accept for a in value.split(",")}
        if record.media_type in types or "*/*" in types or "application/*" in types:
            return
        if types & mt.MANIFEST_TYPES:
            raise ManifestUnknown(
                f"{record.media_type} found, but the Accept header does not allow it"
            )

    async def delete(self, repository: str, reference: str) -> None:
        """Delete a manifest (by digest, with its tags) or a single tag (by tag)."""
        if not self.delete_enabled:
            raise Unsupported("deletes are disabled on this registry")
        tag, digest = _reference(reference)
        if tag is not None:
            if not await self.meta.delete_tag(repository, tag):
                raise ManifestUnknown(detail={"tag": tag})
            return
        if not await self.meta.delete_manifest(repository, str(digest)):
            raise ManifestUnknown(detail={"digest": str(digest)})

    async def tags(self, repository: str, limit: int | None, last: str | None) -> list[str]:
        """Tags of a repository; :class:`NameUnknown` if there is no such repository."""
        result = await self.meta.list_tags(repository, limit, last)
        if result is None:
            raise NameUnknown(detail={"name": repository})
        return result
