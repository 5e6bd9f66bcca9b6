"""Listings: ``/v2/``, the catalog, tags and referrers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.api.context import Services
from registry.api.http import fetch_limit, json_response, page, pagination
from registry.content import mediatypes as mt
from registry.errors import DigestInvalid
from storage.digest import Digest, InvalidDigest

CATALOG_BATCH = 1000


async def base(request: Request, svc: Services) -> Response:
    """``GET /v2/``: the API is here."""
    return json_response({})


async def catalog(request: Request, svc: Services) -> Response:
    """``GET /v2/_catalog``: repository names, paginated with ``n`` and ``last``."""
    n, last = pagination(request)
    visible = request.scope.get("wharf.catalog_filter")  # set by the auth middleware
    if visible is None:
        found = await svc.meta.catalog(fetch_limit(n), last)
    else:
        found = await _filtered_catalog(svc, visible, fetch_limit(n), last)
    names, link = page("/v2/_catalog", n, found)
    return json_response({"repositories": names}, headers=link)


async def _filtered_catalog(
    svc: Services, visible: Callable[[str], bool], limit: int | None, last: str | None
) -> list[str]:
    """Up to ``limit`` names after ``last`` that ``visible`` lets the caller see, read
    from the database in batches."""
    names: list[str] = []
    while limit is None or len(names) < limit:
        batch = await svc.meta.catalog(CATALOG_BATCH, last)
        names += [name for name in batch if visible(name)]
        if len(batch) < CATALOG_BATCH:
            break
        last = batch[-1]
    return names if limit is None else names[:limit]


async def tags_list(request: Request, svc: Services, name: str) -> Response:
    """``GET /v2/<name>/tags/list``: tags in lexical order, paginated."""
    n, last = pagination(request)
    tags, link = page(
        f"/v2/{name}/tags/list", n, await svc.manifests.tags(name, fetch_limit(n), last)
    )
    return json_response({"name": name, "tags": tags}, headers=link)


async def referrers(request: Request, svc: Services, name: str, digest: str) -> Response:
    """``GET /v2/<name>/referrers/<digest>``: an index of the manifests with that subject."""
    try:
        subject = Digest.parse(digest)
    except InvalidDigest as e:
        raise DigestInvalid(str(e)) from None
    artifact_type = request.query_params.get("artifactType") or None
    records = await svc.meta.referrers(name, str(subject), artifact_type)
    descriptors: list[dict[str, Any]] = []
    for r in records:
        desc: dict[str, Any] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
        if r.artifact_type:
            desc["artifactType"] = r.artifact_type
        if r.annotations:
            desc["annotations"] = json.loads(r.annotations)
        descriptors.append(desc)
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return json_response(index, headers=headers, media_type=mt.OCI_INDEX)
