"""The pins seam: what the push-side services ask of a garbage collector running beside
them, so that it never deletes what a push relies on (issue #7, ``docs/gc.md``).

The services take a :class:`Pins` at construction; :class:`NoPins` (no collector) is
the default. Garbage collection supplies its own (its push guard) and raises the
exceptions below from its SQL; the services turn them into OCI errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from registry.meta.store import MetadataStore

T = TypeVar("T")


class DigestBusy(Exception):
    """A digest is being deleted by a running garbage collection: retry shortly."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"{digest} is being garbage collected; retry shortly")
        self.digest = digest


class MountSourceGone(Exception):
    """The blob a mount named is no longer linked to its source repository."""


class Pins(Protocol):
    """Pins taken by uploads, blob HEAD/GET and manifest pushes."""

    async def touch(self, repository: str, digest: str) -> int | None:
        """The size of a blob linked to ``repository`` (None if not), pinned for a
        client that may reference it next instead of uploading it."""
        ...

    async def pin(self, digests: Sequence[str]) -> None:
        """Pin ``digests`` before their bytes are put in place or relied on."""
        ...

    async def while_busy(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run ``write`` (a push-side transaction), again while it finds a collector
        deleting a digest it relies on (:class:`DigestBusy`)."""
        ...

    async def put_back(self, put: Callable[[], Awaitable[object]]) -> None:
        """After a push committed: run ``put`` (storing its bytes again) if a collector
        may have deleted identical bytes, unreferenced until the commit, meanwhile."""
        ...


class NoPins:
    """No garbage collector: nothing to pin; a blob's size is a plain read."""

    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta

    async def touch(self, repository: str, digest: str) -> int | None:
        return await self.meta.blob_size(repository, digest)

    async def pin(self, digests: Sequence[str]) -> None:
        return None

    async def while_busy(self, write: Callable[[], Awaitable[T]]) -> T:
        return await write()

    async def put_back(self, put: Callable[[], Awaitable[object]]) -> None:
        return None
