"""``/v2/<name>/blobs/<digest>``: HEAD, GET (with Range) and DELETE."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from registry.api.context import Services
from registry.api.http import empty, parse_range
from registry.errors import DigestInvalid
from storage.digest import Digest, InvalidDigest


def _digest(value: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidDigest as e:
        raise DigestInvalid(str(e)) from None


async def get_blob(request: Request, svc: Services, name: str, digest: str) -> Response:
    """Stream a blob, a range of it, or (HEAD) only its headers."""
    d = _digest(digest)
    size = await svc.blobs.size(name, d)
    headers = {
        "Docker-Content-Digest": str(d),
        "Accept-Ranges": "bytes",
        "ETag": f'"{d}"',
        "Cache-Control": "max-age=31536000",
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(size)
        return Response(b"", 200, headers=headers, media_type="application/octet-stream")
    for listener in svc.pull_listeners:  # pull events: buffered, never blocking
        listener("blob", name, str(d), "", size, None, None)
    url = await svc.blobs.redirect_url(d)
    if url is not None:
        return RedirectResponse(url, 307, headers={"Docker-Content-Digest": str(d)})
    rng = parse_range(request.headers.get("range"), size) if size else None
    if rng is None:
        start, length, status = 0, size, 200
    else:
        start, length, status = rng[0], rng[1] - rng[0] + 1, 206
        headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
    headers["Content-Length"] = str(length)
    return StreamingResponse(
        svc.blobs.stream(d, start, length),
        status,
        headers=headers,
        media_type="application/octet-stream",
    )


async def delete_blob(request: Request, svc: Services, name: str, digest: str) -> Response:
    """Unlink a blob from the repository (202)."""
    d = _digest(digest)
    await svc.blobs.delete(name, d)
    return empty(202, {"Docker-Content-Digest": str(d)})
