"""``/v2/<name>/manifests/<reference>``: PUT, GET, HEAD, DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.bodies import read_capped
from registry.api.context import Services
from registry.api.http import empty
from registry.errors import ManifestInvalid


def _too_large(limit: int) -> ManifestInvalid:
    return ManifestInvalid(f"manifest is over the {limit} byte limit", status=413)


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    return await read_capped(request.stream(), limit, lambda: _too_large(limit))


async def put_manifest(request: Request, svc: Services, name: str, reference: str) -> Response:
    """Store a manifest (201 with Location and Docker-Content-Digest)."""
    body = await _read_capped(request, svc.manifests.max_size)
    digest, parsed = await svc.manifests.put(
        name, reference, body, request.headers.get("content-type")
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{digest}",
        "Docker-Content-Digest": str(digest),
    }
    if parsed.subject is not None:
        headers["OCI-Subject"] = str(parsed.subject.digest)
    return empty(201, headers)


async def get_manifest(request: Request, svc: Services, name: str, reference: str) -> Response:
    """Return a manifest with its media type (HEAD: headers only)."""
    record = await svc.manifests.resolve(name, reference)
    svc.manifests.check_accept(record, request.headers.getlist("accept"))
    headers = {
        "Docker-Content-Digest": record.digest,
        "ETag": f'"{record.digest}"',
        "Content-Length": str(record.size),
    }
    if request.method == "HEAD":
        return Response(b"", 200, headers=headers, media_type=record.media_type)
    body = await svc.manifests.content(record)
    tag = None if ":" in reference else reference
    for listener in svc.pull_listeners:  # pull events: buffered, never blocking
        listener("manifest", name, record.digest, record.media_type, record.size, tag, body)
    return Response(body, 200, headers=headers, media_type=record.media_type)


async def delete_manifest(request: Request, svc: Services, name: str, reference: str) -> Response:
    """Delete a manifest by digest, or untag by tag (202)."""
    await svc.manifests.delete(name, reference)
    return empty(202)
