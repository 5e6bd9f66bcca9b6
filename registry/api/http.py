"""Small HTTP helpers shared by the handlers."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from registry.errors import DigestInvalid, RangeInvalid
from storage.digest import Digest, InvalidDigest

_BYTE_RANGE = re.compile(r"([0-9]*)-([0-9]*)")


def json_response(
    data: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    """A JSON body with a correct Content-Length."""
    return Response(json.dumps(data).encode(), status, headers=headers, media_type=media_type)


def empty(status: int, headers: dict[str, str] | None = None) -> Response:
    """A response with no body and ``Content-Length: 0``."""
    return Response(b"", status, headers=headers)


def query_digest(request: Request, key: str = "digest") -> Digest | None:
    """The digest in query parameter ``key``; :class:`DigestInvalid` if malformed."""
    value = request.query_params.get(key)
    if value is None:
        return None
    try:
        return Digest.parse(value)
    except InvalidDigest as e:
        raise DigestInvalid(str(e)) from None


def pagination(request: Request) -> tuple[int | None, str | None]:
    """``n`` and ``last`` query parameters (``n`` is capped at 10,000)."""
    raw_n = request.query_params.get("n")
    n: int | None = None
    if raw_n is not None and raw_n != "":
        try:
            n = max(0, min(int(raw_n), 10_000))
        except ValueError:
            n = None
    return n, request.query_params.get("last") or None


def fetch_limit(n: int | None) -> int | None:
    """How many items to fetch for a page of ``n``: one more, to know if another follows."""
    return None if n is None else n + 1


def page(
    path: str, n: int | None, items: list[str], extra: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Cut ``items`` (fetched with :func:`fetch_limit`) to a page of ``n``, with the
    ``Link: <...>; rel="next"`` header only when more items follow (never for ``n=0``)."""
    if n is None or len(items) <= n:
        return items, {}
    items = items[:n]
    if n == 0:
        return items, {}
    params = dict(extra or {})
    params.update({"n": str(n), "last": items[-1]})
    return items, {"Link": f'<{quote(path)}?{urlencode(params)}>; rel="next"'}


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as (start, end inclusive); None to send the whole blob.

    As RFC 9110 allows (and, for an unknown unit, requires), a Range that is not a
    single well-formed byte range is ignored. Raises :class:`RangeInvalid` (416) only
    for a valid range that the blob cannot satisfy.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _BYTE_RANGE.fullmatch(spec.strip())
    if m is None or m.group(0) == "-":
        return None
    first, last = m.groups()
    bad = RangeInvalid(headers={"Content-Range": f"bytes */{size}"})
    if first == "":
        suffix = int(last)
        if suffix <= 0:
            raise bad
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid syntax (RFC 9110 14.1.1): ignored
    if start >= size:
        raise bad
    return start, min(end, size - 1)


def parse_content_range(header: str | None) -> tuple[int, int] | None:
    """An upload chunk's ``Content-Range: start-end`` (end inclusive); None if absent."""
    if not header:
        return None
    value = header.strip()
    if value.lower().startswith("bytes"):
        value = value[5:].strip(" =")
    value = value.split("/")[0]
    first, sep, last = value.partition("-")
    try:
        start, end = int(first), int(last)
    except ValueError:
        raise RangeInvalid("malformed Content-Range") from None
    if not sep or start < 0 or end < start - 1:
        raise RangeInvalid("malformed Content-Range")
    return start, end
