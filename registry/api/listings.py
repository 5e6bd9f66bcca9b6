"""Listings: ``/v2/``, the catalog, tags and referrers."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from registry.api.context import Services
from registry.api.http import fetch_limit, json_response, page, pagination
from registry.content import mediatypes as mt
from registry.errors import DigestInvalid
from storage.digest import Digest, InvalidDigest


async def base(request: Request, svc: Services) -> Response:
    """``GET /v2/``: the API is here."""
    return json_response({})


async def catalog(request: Request, svc: Services) -> Response:
    """``GET /v2/_catalog``: repository names, paginated with ``n`` and ``last``."""
    n, last = pagination(request)
    names, link = page("/v2/_catalog", n, await svc.meta.catalog(fetch_limit(n), last))
    return json_response({"repositories": names}, headers=link)


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
