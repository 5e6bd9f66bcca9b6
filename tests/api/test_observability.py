"""Health, Prometheus metrics across workers, request ids and the access log."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.oci import push_image, unique_name
from tests.support.server import WharfServer
from tests.support.slapd import metric


def _counter(metrics: str, route: str, method: str, status: str) -> float:
    pattern = (
        rf'wharf_http_requests_total\{{method="{method}",route="{route}",status="{status}"\}} '
        r"([0-9.e+]+)"
    )
    return sum(float(v) for v in re.findall(pattern, metrics))


def test_health(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_metrics_count_requests_of_every_worker(make_wharf: Callable[..., WharfServer]) -> None:
    server = make_wharf({"http": {"workers": 2}})
    name = unique_name("metrics")
    # separate connections, so the kernel spreads them over both workers
    for _ in range(20):
        with server.client() as c:
            assert c.get(f"/v2/{name}/tags/list").status_code == 404
    with server.client() as c:
        text = c.get("/metrics").text
    assert _counter(text, "tags", "GET", "404") == 20
    assert "wharf_http_request_duration_seconds_bucket" in text


def test_request_id_is_echoed_or_made(client: httpx.Client) -> None:
    r = client.get("/v2/", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/v2/")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_access_log_explains_requests(client: httpx.Client, wharf: WharfServer) -> None:
    name = unique_name("log")
    push_image(client, name, "v1", [b"logged layer"])
    r = client.get(f"/v2/{name}/manifests/missing", headers={"X-Request-Id": "find-me"})
    assert r.status_code == 404
    deadline = time.monotonic() + 5
    entry = None
    while entry is None and time.monotonic() < deadline:
        for line in wharf.log().splitlines():
            if '"find-me"' in line:
                entry = json.loads(line)
        time.sleep(0.05)
    assert entry is not None, "no access log line for the request"
    assert entry["method"] == "GET"
    assert entry["route"] == "manifests"
    assert entry["repository"] == name
    assert entry["status"] == 404
    assert entry["error"] == "MANIFEST_UNKNOWN"
    assert entry["duration_ms"] >= 0


@pytest.mark.expect_5xx(503)  # the database is down: 503 is the answer
def test_broken_database_gives_503_not_a_crash(make_wharf: Callable[..., WharfServer]) -> None:
    server = make_wharf({"http": {"workers": 1}})
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
        db = server.root / "wharf.db"
        for path in (db, db.with_name("wharf.db-wal"), db.with_name("wharf.db-shm")):
            if path.exists():
                path.write_bytes(b"this is not a database" * 100)
        r = c.get("/v2/some/repo/tags/list")
        assert r.status_code == 503
        assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
        # the metrics and the access log say which backend failed
        assert metric(server, "wharf_http_errors_total", code="DATABASE_UNAVAILABLE") == 1
        assert c.get("/healthz").status_code == 503
        assert c.get("/v2/").status_code == 200  # the process is alive and answering
