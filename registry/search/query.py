"""Search queries: parsing the parameters, permission filtering, cursors, pages.

Used by the JSON API (:mod:`registry.search.api`) and the web UI alike. Everything is
answered from the database (:mod:`registry.search.store`,
:mod:`registry.search.store_browse`); nothing reads storage.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from registry.content.names import parse_reference
from registry.errors import InvalidParameter
from registry.meta.db import Database
from registry.search import store
from registry.search import store_browse as browse
from storage.digest import Digest, InvalidDigest

Allowed = Callable[[str], bool]  # may the caller pull this repository?
DEFAULT_PAGE = 50
MAX_PAGE = 1000


class Params:
    """Query parameters with repeated keys (``label=a=1&label=b=2``)."""

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self.items = list(items)

    def get(self, key: str) -> str | None:
        values = self.all(key)
        return values[-1] if values else None

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.items if k == key and v != ""]


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed search: the filter, the order, the page."""

    filter: store.SearchFilter
    sort: str = "name"
    descending: bool = False
    limit: int = DEFAULT_PAGE
    after: tuple[str, ...] | None = None


def _pair(text: str, what: str) -> tuple[str, str | None]:
    key, sep, value = text.partition("=")
    if not key:
        raise InvalidParameter(f"{what} must be key=value or key, got {text[:200]!r}")
    return key, (value if sep else None)


def _time(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidParameter(f"{what} must be an ISO 8601 time, got {text[:100]!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _digest(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(Digest.parse(text))
    except InvalidDigest as e:
        raise InvalidParameter(f"digest: {e}") from None


def _platform(text: str | None) -> tuple[str, str, str | None] | None:
    if text is None:
        return None
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidParameter(f"platform must be os/architecture[/variant], got {text[:100]!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def encode_cursor(sort: str, descending: bool, values: list[str]) -> str:
    raw = json.dumps({"s": sort, "d": descending, "k": values}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(text: str, sort: str, descending: bool) -> tuple[str, ...]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        values = doc["k"]
        ok = (
            doc["s"] == sort
            and doc["d"] == descending
            and isinstance(values, list)
            and all(isinstance(v, str) for v in values)
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        ok = False
    if not ok:
        raise InvalidParameter("cursor is not one this search returned")
    if sort == "pushed":
        _time(values[0], "cursor")
    return tuple(values)


def parse_query(params: Params, default_sort: str = "name") -> Query:
    """A :class:`Query` from request parameters; :class:`InvalidParameter` if unusable."""
    sort = params.get("sort") or default_sort
    descending = sort.startswith("-")
    sort = sort.lstrip("-")
    if sort not in store.SORT_KEYS:
        raise InvalidParameter(
            f"sort must be one of {', '.join(store.SORT_KEYS)} (- for descending)"
        )
    raw_n = params.get("n")
    try:
        limit = DEFAULT_PAGE if raw_n is None else int(raw_n)
    except ValueError:
        raise InvalidParameter(f"n must be a number, got {str(raw_n)[:20]!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidParameter(f"n must be between 1 and {MAX_PAGE}")
    cursor = params.get("cursor")
    f = store.SearchFilter(
        name=params.get("name"),
        prefix=params.get("prefix"),
        repository=params.get("repository"),
        tag=params.get("tag"),
        digest=_digest(params.get("digest")),
        labels=tuple(_pair(v, "label") for v in params.all("label")),
        annotations=tuple(_pair(v, "annotation") for v in params.all("annotation")),
        media_type=params.get("mediaType"),
        artifact_type=params.get("artifactType"),
        platform=_platform(params.get("platform")),
        pushed_after=_time(params.get("pushed_after"), "pushed_after"),
        pushed_before=_time(params.get("pushed_before"), "pushed_before"),
    )
    after = _decode_cursor(cursor, sort, descending) if cursor else None
    return Query(f, sort, descending, limit, after)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results and the cursor of the next (None on the last page)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


def _iso(value: datetime) -> str:
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()


def row_json(row: store.TagRow, platforms: list[str], total: int | None) -> dict[str, Any]:
    """A result: ``size`` is the manifest's, ``imageSize`` its config and layers (all
    platforms' for an index; None if not indexed)."""
    return {
        "repository": row.repository,
        "tag": row.tag,
        "digest": row.digest,
        "mediaType": row.media_type,
        "artifactType": row.artifact_type,
        "size": row.size,
        "imageSize": total,
        "pushed": _iso(row.pushed_at),
        "platforms": platforms,
    }


class SearchService:
    """Searches and browsing, limited to the repositories a caller may pull."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _visible(self, allowed: Allowed | None) -> list[tuple[int, str]] | None:
        """The repositories ``allowed`` lets the caller pull; None if all of them."""
        if allowed is None:
            return None
        repos = await self.db.run_read(store.repository_ids)
        visible = [(i, name) for i, name in repos if allowed(name)]
        return None if len(visible) == len(repos) else visible

    async def search(self, query: Query, allowed: Allowed | None) -> Page:
        """One page of tags matching ``query`` that ``allowed`` lets the caller see
        (``allowed`` None: everything)."""
        visible = await self._visible(allowed)
        if not visible and visible is not None:
            return Page([], None)
        if visible is not None:
            names = [name for _, name in visible]
            narrowed = replace(
                query.filter,
                repository_ids=[i for i, _ in visible],
                repository_range=(min(names), max(names)),
            )
            query = replace(query, filter=narrowed)
        rows, platforms, totals = await self.db.run_read(
            store.page, query.filter, query.sort, query.descending, query.after, query.limit
        )
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        cursor = None
        if more and rows:
            cursor = encode_cursor(
                query.sort, query.descending, store.cursor_values(rows[-1], query.sort)
            )
        found = [
            row_json(r, platforms.get(r.manifest_id, []), totals.get(r.manifest_id)) for r in rows
        ]
        return Page(found, cursor)

    async def repository(self, name: str) -> dict[str, int] | None:
        """Counts of a repository; None if unknown."""
        return await self.db.run_read(browse.repository_summary, name)

    async def image(self, repository: str, reference: str) -> dict[str, Any] | None:
        """The image page's facts of a tag or digest; None if there is no such manifest."""
        try:
            tag, digest = parse_reference(reference)
        except InvalidDigest:
            return None
        info = await self.db.run_read(
            browse.manifest_info, repository, tag, str(digest) if digest else None
        )
        return image_json(info) if info is not None else None

    async def counts(self) -> dict[str, int]:
        return await self.db.run_read(browse.index_counts)


def image_json(info: browse.ManifestInfo) -> dict[str, Any]:
    """The JSON of the image endpoint (and what the image page shows)."""
    detail = info.detail
    layers = detail.get("layers")
    if not isinstance(layers, list):  # indexed before facts existed: sizes, no order
        skip = {info.config_digest}
        layers = [{"digest": d, "size": s} for d, s in sorted(info.blobs) if d not in skip]
    image = detail.get("image") if isinstance(detail.get("image"), dict) else {}
    return {
        "repository": info.repository,
        "digest": info.digest,
        "mediaType": info.media_type,
        "artifactType": info.artifact_type,
        "size": info.size,
        "imageSize": info.total_size,
        "pushed": _iso(info.pushed_at),
        "subject": info.subject,
        "tags": info.tags,
        "platforms": info.platforms,
        "annotations": info.annotations,
        "config": detail.get("config"),
        "image": image,
        "layers": layers,
        "manifests": detail.get("manifests", []),
        "referrers": info.referrers,
        "indexes": info.parents,
        "indexed": bool(detail),
    }


def params_of(query_string: bytes | str, extra: Mapping[str, str] | None = None) -> Params:
    from urllib.parse import parse_qsl

    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    items = parse_qsl(text, keep_blank_values=True)
    return Params(items + list((extra or {}).items()))
