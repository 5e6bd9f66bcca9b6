"""Slow and stalled clients (issue #13): header and idle timeouts, the connection cap.

A real ``wharf serve`` with short limits (``http.timeouts``, ``http.maxconnections``), one
worker (the cap is per worker). Slow clients are raw sockets that send at the pace a test
sets; the well-behaved client meanwhile is httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.oci import assert_error, digest_of, push_blob, unique_name
from tests.support.server import WharfServer

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
MARGIN = 4.0  # a loaded machine (tests run in parallel) may be this late
CAP = 4


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    config = {
        "http": {
            "workers": 1,
            "timeouts": {"header": f"{HEADER_TIMEOUT}s", "idle": f"{IDLE_TIMEOUT}s"},
            "maxconnections": 200,
        }
    }
    server = WharfServer(tmp_path_factory.mktemp("limited"), config).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    config = {"http": {"workers": 1, "maxconnections": CAP}}
    server = WharfServer(tmp_path_factory.mktemp("capped"), config).start()
    yield server
    server.stop()


async def _read_to_end(reader: asyncio.StreamReader) -> bytes | None:
    """Everything the server sends until it closes; None if it reset the connection."""
    try:
        return await reader.read(-1)
    except ConnectionResetError:
        return None


async def _slow_headers(port: int, request: bytes) -> tuple[float, bytes | None]:
    """Send ``request`` a byte a second (nothing when it is empty) until the server closes
    the connection; return how long that took and what the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = time.monotonic()

    async def drip() -> None:
        await asyncio.sleep(0.5)  # out of step with the server's timer
        with contextlib.suppress(ConnectionError):
            for byte in request:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)

    dripping = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(_read_to_end(reader), HEADER_TIMEOUT + MARGIN)
        return time.monotonic() - opened, answer
    finally:
        dripping.cancel()
        writer.close()


async def test_slow_headers_are_cut_while_others_are_served(limited: WharfServer) -> None:
    request = f"GET /v2/ HTTP/1.1\r\nHost: {limited.host}\r\nUser-Agent: slowloris\r\n\r\n"
    attack = [asyncio.create_task(_slow_headers(limited.port, request.encode())) for _ in range(60)]
    silent = [asyncio.create_task(_slow_headers(limited.port, b"")) for _ in range(5)]
    served: list[float] = []
    async with httpx.AsyncClient(base_url=limited.url, timeout=10) as client:
        for _ in range(3):  # during the attack
            await asyncio.sleep(0.3)
            started = time.monotonic()
            r = await client.get("/v2/")
            assert r.status_code == 200
            served.append(time.monotonic() - started)
            if len(served) == 1:
                assert not any(t.done() for t in attack), "the attack was over already"
    results = await asyncio.gather(*attack)
    quiet = await asyncio.gather(*silent)
    for elapsed, _ in results + quiet:
        assert HEADER_TIMEOUT - 0.3 <= elapsed <= HEADER_TIMEOUT + MARGIN, elapsed
    # a client that sent part of a request is told why (unless the close raced its next byte)
    answers = [answer for _, answer in results if answer is not None]
    assert len(answers) >= len(results) // 2
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert b"\r\nconnection: close\r\n" in answer.lower()
    assert all(answer in (b"", None) for _, answer in quiet)  # nothing sent, nothing said
    assert max(served) < HEADER_TIMEOUT, served


async def _stalled_body(port: int, host: str, target: str, body: bytes, size: int) -> float:
    """Send the headers of a ``size``-byte body and ``body`` (its start), then nothing:
    the seconds from the last byte sent until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    stalled = time.monotonic()
    try:
        answer = await asyncio.wait_for(_read_to_end(reader), IDLE_TIMEOUT + MARGIN)
    finally:
        writer.close()
    assert not answer, answer  # dropped, no response
    return time.monotonic() - stalled


async def test_stalled_upload_is_cut_and_stays_resumable(limited: WharfServer) -> None:
    name, blob = unique_name("stall"), os.urandom(1024 * 1024)
    digest, sent = digest_of(blob), 256 * 1024
    async with httpx.AsyncClient(base_url=limited.url, timeout=10) as client:
        catalog = (await client.get("/v2/_catalog")).json()
        r = await client.post(f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["location"]
        chunked = asyncio.create_task(
            _stalled_body(limited.port, limited.host, f"PATCH {location}", blob[:sent], len(blob))
        )
        monolithic = asyncio.create_task(
            _stalled_body(
                limited.port,
                limited.host,
                f"POST /v2/{name}-mono/blobs/uploads/?digest={digest}",
                blob[:sent],
                len(blob),
            )
        )
        await asyncio.sleep(1.0)
        r = await client.get("/v2/")  # the stalled requests hold nothing else up
        assert r.status_code == 200
        for elapsed in await asyncio.gather(chunked, monolithic):
            assert IDLE_TIMEOUT - 0.3 <= elapsed <= IDLE_TIMEOUT + MARGIN, elapsed

        # nothing visible changed
        assert (await client.head(f"/v2/{name}/blobs/{digest}")).status_code == 404
        assert (await client.head(f"/v2/{name}-mono/blobs/{digest}")).status_code == 404
        assert (await client.get("/v2/_catalog")).json() == catalog

        # the chunked upload kept what it received and resumes from there
        r = await client.get(location)
        assert r.status_code == 204
        received = int(r.headers["range"].split("-")[1]) + 1
        assert 0 < received <= sent
        r = await client.patch(
            location,
            content=blob[received:],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{received}-{len(blob) - 1}",
            },
        )
        assert r.status_code == 202, r.text
        r = await client.put(r.headers["location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        r = await client.get(f"/v2/{name}/blobs/{digest}")
        assert r.status_code == 200 and r.content == blob
    assert "no request body bytes for 3s" in limited.log()
    assert "Traceback" not in limited.log()


async def test_slow_but_steady_push_succeeds(limited: WharfServer) -> None:
    name, blob = unique_name("steady"), os.urandom(20 * 1024 * 1024)
    chunk = 64 * 1024

    async def throttled() -> AsyncIterator[bytes]:
        """At most ~6 MiB/s, with three pauses of half the idle timeout."""
        for i in range(0, len(blob), chunk):
            if i and i % (6 * 1024 * 1024) == 0:
                await asyncio.sleep(IDLE_TIMEOUT / 2)
            yield blob[i : i + chunk]
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as client:
        r = await client.post(f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202
        started = time.monotonic()
        r = await client.patch(
            r.headers["location"],
            content=throttled(),
            headers={"Content-Type": "application/octet-stream"},
        )
        took = time.monotonic() - started
        assert r.status_code == 202, r.text
        assert took > 2 * IDLE_TIMEOUT  # much longer than the idle timeout, as meant
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = await client.put(r.headers["location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        async with client.stream("GET", f"/v2/{name}/blobs/{digest}") as r:
            assert r.status_code == 200
            pulled = hashlib.sha256()
            async for part in r.aiter_bytes():
                pulled.update(part)
        assert "sha256:" + pulled.hexdigest() == digest


def test_client_that_stops_reading_is_dropped(limited: WharfServer) -> None:
    name, blob = unique_name("unread"), os.urandom(16 * 1024 * 1024)
    with limited.client() as client:
        digest = push_blob(client, name, blob)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # before connecting
        s.connect(("127.0.0.1", limited.port))
        s.sendall(
            f"GET /v2/{name}/blobs/{digest} HTTP/1.1\r\nHost: {limited.host}\r\n\r\n".encode()
        )
        time.sleep(IDLE_TIMEOUT + MARGIN)  # take nothing
        s.settimeout(10)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while data := s.recv(1024 * 1024):
                received += len(data)
    assert 0 < received < len(blob)  # the start of the answer, then the server let go
    assert "took no response bytes for 3s" in limited.log()
    assert httpx.get(f"{limited.url}/v2/").status_code == 200


def test_connections_beyond_the_cap_get_429(capped: WharfServer) -> None:
    held = [capped.client() for _ in range(CAP)]
    try:
        for client in held:  # each keeps its connection open (keep-alive)
            assert client.get("/v2/").status_code == 200
        with capped.client() as extra:
            r = extra.get("/v2/")
            assert_error(r, 429, "TOOMANYREQUESTS")
            assert r.headers["retry-after"] == "1"
            assert r.headers["connection"] == "close"
            # one with a body still reads the answer (the server drains what it does not want)
            blob = os.urandom(1024 * 1024)
            r = extra.post(
                f"/v2/{unique_name('capped')}/blobs/uploads/",
                params={"digest": digest_of(blob)},
                content=blob,
            )
            assert_error(r, 429, "TOOMANYREQUESTS")
        for client in held:  # the connections within the cap are served as before
            assert client.get("/v2/").status_code == 200
    finally:
        for client in held:
            client.close()
    deadline = time.monotonic() + 5
    while (status := httpx.get(f"{capped.url}/v2/").status_code) == 429:
        assert time.monotonic() < deadline, "still refused after the held connections closed"
        time.sleep(0.1)
    assert status == 200
    assert "http.maxconnections is 4" in capped.log()
