"""An async client for any OCI distribution registry (Wharf, the reference registry ...).

Everything the replicator and the mirror do to a registry: ping, manifests (GET/HEAD/PUT/
DELETE with an Accept for every manifest type), blobs (HEAD, streamed GET from an offset),
chunked and resumable uploads, cross-repository mounts, tag and catalog listings followed
through their ``Link`` pages. Basic and Docker token auth are handled by
:class:`~replicator.auth.Authenticator`; failures raise :mod:`replicator.errors`.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from registry.content import mediatypes as mt
from replicator.auth import Authenticator
from replicator.errors import (
    RemoteAuthError,
    RemoteDenied,
    RemoteError,
    RemoteNotFound,
    RemoteRangeError,
    RemoteUnreachable,
    RemoteUnsupported,
)

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)
_LINK_NEXT = re.compile(r"<([^>]+)>\s*;\s*rel=\"?next\"?")
PAGE = 1000
READ_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _error(r: httpx.Response, what: str) -> RemoteError:
    code, message = "", ""
    try:
        errors = json.loads(r.content).get("errors") or []
        if errors:
            code, message = str(errors[0].get("code", "")), str(errors[0].get("message", ""))
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        pass
    text = f"{what}: {r.status_code} {code} {message}".strip()
    status = r.status_code
    if status == 401:
        return RemoteAuthError(text, status, code)
    if status == 403 or code == "DENIED":
        return RemoteDenied(text, status, code)
    if status == 404:
        return RemoteNotFound(text, status, code)
    if status == 416:
        return RemoteRangeError(text, status, code)
    if status == 405 or code == "UNSUPPORTED":
        return RemoteUnsupported(text, status, code)
    return RemoteError(text, status, code)


def _verify(insecure: bool, cacert: str) -> bool | ssl.SSLContext:
    if insecure:
        return False
    if cacert:
        return ssl.create_default_context(cafile=cacert)
    return True


class RegistryClient:
    """One remote registry. Use as ``async with RegistryClient(url) as client``."""

    def __init__(
        self,
        url: str,
        username: str = "",
        password: str = "",
        *,
        insecure: bool = False,
        cacert: str = "",
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.auth = Authenticator(username, password)
        self.http = httpx.AsyncClient(
            base_url=self.url,
            verify=_verify(insecure, cacert),
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=True,
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    # -- plumbing ------------------------------------------------------------

    def _absolute(self, location: str) -> str:
        return location if "://" in location else self.url + location

    async def request(
        self,
        method: str,
        url: str,
        scope: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with the known credentials; on a 401 authenticate and send again (only
        a body given as bytes can be sent twice). A GET or HEAD that fails to connect or
        gets a 5xx is tried again, up to ``READ_ATTEMPTS`` times in all."""
        for attempt in range(READ_ATTEMPTS):
            idempotent = method in ("GET", "HEAD") and attempt < READ_ATTEMPTS - 1
            try:
                r = await self._authenticated(method, url, scope, headers, params, content, stream)
            except RemoteUnreachable:
                if not idempotent:
                    raise
            else:
                if r.status_code < 500 or not idempotent:
                    return r
                await r.aclose()
            await asyncio.sleep(0.25 * 2**attempt)
        raise AssertionError("unreachable")

    async def _authenticated(
        self,
        method: str,
        url: str,
        scope: str,
        headers: dict[str, str] | None,
        params: dict[str, str] | None,
        content: bytes | AsyncIterable[bytes] | None,
        stream: bool,
    ) -> httpx.Response:
        replayable = content is None or isinstance(content, bytes)
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            auth = self.auth.header(scope)
            if auth:
                hdrs["Authorization"] = auth
            request = self.http.build_request(
                method, url, headers=hdrs, params=params, content=content
            )
            try:
                r = await self.http.send(request, stream=stream)
            except httpx.HTTPError as e:
                raise RemoteUnreachable(f"{method} {url}: {type(e).__name__}: {e}") from e
            if r.status_code != 401 or attempt or not replayable:
                return r
            await r.aread()
            await r.aclose()
            if not await self.auth.answer(self.http, r, scope, auth):
                return r
        raise AssertionError("unreachable")

    async def _checked(
        self, method: str, url: str, scope: str, ok: tuple[int, ...], what: str, **kw: Any
    ) -> httpx.Response:
        r = await self.request(method, url, scope, **kw)
        if r.status_code not in ok:
            raise _error(r, what)
        return r

    # -- base, listings ------------------------------------------------------

    async def ping(self) -> None:
        """GET /v2/ (authenticating if asked to): raises unless the registry answers."""
        await self._checked("GET", "/v2/", "", (200,), "ping")

    async def _pages(self, path: str, scope: str, key: str, what: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        params: dict[str, str] | None = {"n": str(PAGE)}
        while url is not None:
            r = await self._checked("GET", url, scope, (200,), what, params=params)
            items += r.json().get(key) or []
            m = _LINK_NEXT.search(r.headers.get("link", ""))
            url, params = (self._absolute(m.group(1)), None) if m else (None, None)
        return items

    async def tags(self, repository: str) -> list[str]:
        """Every tag of a repository (all pages); [] if the repository is unknown."""
        try:
            return await self._pages(
                f"/v2/{repository}/tags/list", pull_scope(repository), "tags", "tags"
            )
        except RemoteNotFound:
            return []

    async def catalog(self) -> list[str]:
        """Every repository name the remote lists (all pages)."""
        return await self._pages("/v2/_catalog", "registry:catalog:*", "repositories", "catalog")

    # -- manifests -----------------------------------------------------------

    async def head_manifest(self, repository: str, reference: str) -> ManifestInfo | None:
        """Digest, type and size of a manifest; None if there is none."""
        r = await self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            pull_scope(repository),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise _error(r, f"HEAD manifest {repository}:{reference}")
        return ManifestInfo(
            r.headers.get("docker-content-digest", ""),
            r.headers.get("content-type", "").split(";")[0],
            int(r.headers.get("content-length") or 0),
        )

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        r = await self._checked(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            pull_scope(repository),
            (200,),
            f"GET manifest {repository}:{reference}",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        return Manifest(
            r.headers.get("docker-content-digest", ""),
            r.headers.get("content-type", "").split(";")[0],
            r.content,
        )

    async def put_manifest(
        self, repository: str, reference: str, body: bytes, media_type: str
    ) -> str:
        r = await self._checked(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            push_scope(repository),
            (200, 201),
            f"PUT manifest {repository}:{reference}",
            headers={"Content-Type": media_type},
            content=body,
        )
        return str(r.headers.get("docker-content-digest", ""))

    async def delete_manifest(self, repository: str, reference: str) -> None:
        """DELETE a manifest by digest, or a tag (Wharf; the reference answers 405 to that)."""
        await self._checked(
            "DELETE",
            f"/v2/{repository}/manifests/{reference}",
            f"repository:{repository}:delete,pull,push",
            (200, 202, 204),
            f"DELETE manifest {repository}:{reference}",
        )

    # -- blobs ---------------------------------------------------------------

    async def head_blob(self, repository: str, digest: str) -> int | None:
        """The size of a blob in a repository, or None if it is not there."""
        r = await self.request("HEAD", f"/v2/{repository}/blobs/{digest}", pull_scope(repository))
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise _error(r, f"HEAD blob {repository}@{digest}")
        return int(r.headers.get("content-length") or 0)

    @asynccontextmanager
    async def blob_stream(
        self, repository: str, digest: str, offset: int = 0
    ) -> AsyncIterator[httpx.Response]:
        """A streamed GET of a blob from ``offset`` (a ``Range`` request when > 0).

        The response is 200 (whole) or 206 (from ``offset``); read it with ``aiter_raw``."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = await self.request(
            "GET",
            f"/v2/{repository}/blobs/{digest}",
            pull_scope(repository),
            headers=headers,
            stream=True,
        )
        try:
            if r.status_code not in (200, 206):
                await r.aread()
                raise _error(r, f"GET blob {repository}@{digest}")
            if offset and r.status_code != 206:
                raise RemoteError(f"GET blob {repository}@{digest}: Range not honoured", 200)
            yield r
        finally:
            await r.aclose()

    async def mount_blob(self, repository: str, source: str, digest: str) -> str | None:
        """Mount ``digest`` from ``source``: None when mounted, else an upload Location
        the registry opened instead."""
        r = await self._checked(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            f"{push_scope(repository)} {pull_scope(source)}",
            (201, 202),
            f"mount {digest} from {source} into {repository}",
            params={"mount": digest, "from": source},
        )
        if r.status_code == 201:
            return None
        return self._absolute(r.headers["location"])

    async def start_upload(self, repository: str) -> str:
        """Open an upload session; its absolute Location."""
        r = await self._checked(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            push_scope(repository),
            (202,),
            f"start upload to {repository}",
        )
        return self._absolute(r.headers["location"])

    async def upload_status(self, repository: str, location: str) -> tuple[int, str]:
        """(bytes received, Location) of an upload session; RemoteNotFound if it is gone."""
        r = await self._checked("GET", location, push_scope(repository), (204, 200), "status")
        return _received(r), self._absolute(r.headers.get("location", location))

    async def upload_chunk(
        self, repository: str, location: str, body: AsyncIterable[bytes], start: int, length: int
    ) -> tuple[int, str]:
        """PATCH ``length`` bytes at ``start``; (bytes received, next Location)."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + length - 1}",
            "Content-Length": str(length),
        }
        r = await self._checked(
            "PATCH",
            location,
            push_scope(repository),
            (202, 204),
            "upload chunk",
            headers=headers,
            content=body,
        )
        return _received(r), self._absolute(r.headers.get("location", location))

    async def finish_upload(
        self,
        repository: str,
        location: str,
        digest: str,
        body: AsyncIterable[bytes] | None = None,
        length: int = 0,
    ) -> None:
        """PUT ``?digest=`` (with the last bytes, or the whole blob, as ``body``)."""
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        await self._checked(
            "PUT",
            str(url),
            push_scope(repository),
            (201, 204),
            f"finish upload of {digest}",
            headers=headers,
            content=body if body is not None else b"",
        )

    async def cancel_upload(self, repository: str, location: str) -> None:
        r = await self.request("DELETE", location, push_scope(repository))
        await r.aclose()

    async def delete_blob(self, repository: str, digest: str) -> None:
        await self._checked(
            "DELETE",
            f"/v2/{repository}/blobs/{digest}",
            f"repository:{repository}:delete,pull,push",
            (202, 204),
            f"DELETE blob {digest}",
        )


def _received(r: httpx.Response) -> int:
    """Bytes an upload holds, from its ``Range: 0-N`` header (none: 0)."""
    raw = r.headers.get("range", "")
    m = re.match(r"^(?:bytes=)?0-(\d+)$", raw.strip())
    return int(m.group(1)) + 1 if m else 0
