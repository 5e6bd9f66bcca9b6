"""The pre-commit facts seam: what a feature reads from a manifest before its push
transaction, handed to the change hooks as the push's ``details``.

The search feature supplies its reader (:func:`registry.search.setup.facts_reader`);
without one a push carries no facts. A reader must never raise: a push goes in without
facts rather than fail for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from registry.content.manifests import ParsedManifest
from storage.blobs import BlobStore

FactsReader = Callable[[BlobStore, ParsedManifest], Awaitable[dict[str, object]]]


async def no_facts(blobs: BlobStore, parsed: ParsedManifest) -> dict[str, object]:
    """The default reader: no facts."""
    return {}
