"""``/v2/<name>/blobs/uploads/``: monolithic, chunked and resumable uploads, and mounts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.context import Services
from registry.api.http import empty, parse_content_range, query_digest
from registry.config import Settings
from registry.content.names import check_name
from registry.errors import BlobUploadInvalid, NameInvalid, SizeInvalid
from registry.service.uploads import UploadLimits, upload_range


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": upload_range(size),
        "Docker-Upload-UUID": upload_id,
    }


def _blob_created(name: str, digest: str) -> Response:
    return empty(201, {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})


def _length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BlobUploadInvalid("invalid Content-Length") from None


def _chunk_offset(request: Request) -> int | None:
    """Where the chunk's Content-Range says it starts (None without one).

    A Content-Range whose length differs from the Content-Length is SIZE_INVALID, as in
    the reference registry, before any byte is taken.
    """
    rng = parse_content_range(request.headers.get("content-range"))
    if rng is None:
        return None
    start, end = rng
    length = _length(request)
    if length is not None and length != end - start + 1:
        raise SizeInvalid(
            f"Content-Range {start}-{end} is {end - start + 1} bytes, Content-Length is {length}"
        )
    return start


def caller_of(request: Request) -> str:
    """Whose upload sessions a request counts against: the authenticated user, else the
    client's address (uvicorn's, from ``X-Forwarded-For`` when sent by a trusted proxy)."""
    user = request.scope.get("wharf.user")
    if user:
        return f"user:{user}"
    client = request.scope.get("client")
    return f"addr:{client[0] if client else ''}"


def upload_limits(settings: Settings) -> UploadLimits:
    """The caps on open sessions; a session older than the purge age is the purge's."""
    maintenance = settings.storage.maintenance
    purging, limits = maintenance.uploadpurging, maintenance.uploadlimits
    expire = purging.age if purging.enabled and not purging.dryrun else None
    return UploadLimits(limits.perrepository, limits.percaller, expire)


async def start_upload(request: Request, svc: Services, name: str) -> Response:
    """POST: mount, monolithic upload with ``?digest=``, or open a session (202).

    Only the last opens a session that outlives the request: it alone is capped
    (``storage.maintenance.uploadlimits``, 429 past a cap)."""
    mount = query_digest(request, "mount")
    source = request.query_params.get("from")
    if mount is not None and source:
        try:
            check_name(source)
        except NameInvalid:
            source = None
        if source and await svc.blobs.mount(name, source, mount) is not None:
            return _blob_created(name, str(mount))
    digest = query_digest(request)
    if digest is not None:
        await svc.uploads.monolithic(name, request.stream(), digest, _length(request))
        return _blob_created(name, str(digest))
    upload_id = await svc.uploads.open(name, caller_of(request), upload_limits(svc.settings))
    headers = _upload_headers(name, upload_id, 0)
    return empty(202, headers)


async def upload_status(request: Request, svc: Services, name: str, upload_id: str) -> Response:
    """GET: where the upload stands (204 with Range)."""
    size = await svc.uploads.size(name, upload_id)
    return empty(204, _upload_headers(name, upload_id, size))


async def patch_upload(request: Request, svc: Services, name: str, upload_id: str) -> Response:
    """PATCH: append a chunk (streamed), optionally at the offset of its Content-Range."""
    size = await svc.uploads.append(name, upload_id, request.stream(), _chunk_offset(request))
    return empty(202, _upload_headers(name, upload_id, size))


async def finish_upload(request: Request, svc: Services, name: str, upload_id: str) -> Response:
    """PUT ``?digest=``: append the last chunk (if any), verify, make the blob visible."""
    digest = query_digest(request)
    if digest is None:
        raise BlobUploadInvalid("digest query parameter is required")
    length = _length(request)
    if length is None or length > 0 or request.headers.get("transfer-encoding"):
        await svc.uploads.append(name, upload_id, request.stream(), _chunk_offset(request))
    await svc.uploads.finish(name, upload_id, digest)
    return _blob_created(name, str(digest))


async def cancel_upload(request: Request, svc: Services, name: str, upload_id: str) -> Response:
    """DELETE: abort the upload."""
    await svc.uploads.cancel(name, upload_id)
    return empty(204)
