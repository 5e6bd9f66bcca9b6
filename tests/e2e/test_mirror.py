"""The pull-through mirror (issue #6): site M mirrors upstream U under the prefix ``hub``."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.gc import run_gc
from tests.support.oci import assert_error, digest_of, push_blob
from tests.support.reference import ReferenceRegistry
from tests.support.replication import (
    ACCEPT,
    push_layers,
    push_multiarch,
    random_bytes,
)
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
STARTUP = 120  # seconds: a loaded machine imports slowly


class Pair:
    def __init__(self, upstream: WharfServer, mirror: WharfServer) -> None:
        self.upstream, self.mirror = upstream, mirror


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("mirror")
    upstream = WharfServer(root / "upstream", {"http": {"workers": 1}}).start(STARTUP)
    mirrors = [{"prefix": "hub", "remoteurl": upstream.url, "ttl": "1s"}]
    # one worker: "fetched once" holds per process (see docs/replication.md)
    mirror = WharfServer(root / "mirror", {"mirrors": mirrors, "http": {"workers": 1}})
    mirror.start(STARTUP)
    try:
        yield Pair(upstream, mirror)
    finally:
        mirror.stop()
        upstream.stop()


def _pull(client: httpx.Client, repo: str, ref: str) -> dict[str, str]:
    """Pull a manifest (an index: every child) and every blob; {digest: what} checked."""
    r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    assert digest_of(r.content) == r.headers["docker-content-digest"]
    doc = json.loads(r.content)
    seen = {r.headers["docker-content-digest"]: "manifest"}
    for child in doc.get("manifests") or []:
        seen |= _pull(client, repo, child["digest"])
    for blob in [doc.get("config"), *(doc.get("layers") or [])]:
        if blob:
            b = client.get(f"/v2/{repo}/blobs/{blob['digest']}")
            assert b.status_code == 200, b.text
            assert digest_of(b.content) == blob["digest"]
            seen[blob["digest"]] = "blob"
    return seen


def _upstream_blob_gets(upstream: WharfServer) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in upstream.log().splitlines():
        if '"route":"blobs"' in line and '"method":"GET"' in line:
            entry = json.loads(line)
            counts[entry["path"].rsplit("/", 1)[1]] += 1
    return counts


def test_concurrent_pulls_fetch_each_blob_once(pair: Pair) -> None:
    with pair.upstream.client() as up:
        layers = [random_bytes("m1", 8 * MiB), random_bytes("m2", 512 * 1024), b"small"]
        push_layers(up, "library/app", "v1", layers)
        push_multiarch(up, "library/app", "multi", "mirror-multi", layers[1])
    for ref in ("v1", "multi"):
        with ThreadPoolExecutor(8) as pool:
            clients = [pair.mirror.client() for _ in range(8)]
            results = list(pool.map(lambda c, r=ref: _pull(c, "hub/library/app", r), clients))
            for c in clients:
                c.close()
        assert all(r == results[0] for r in results)
        blobs = [d for d, what in results[0].items() if what == "blob"]
        counts = _upstream_blob_gets(pair.upstream)
        assert {d: counts[d] for d in blobs} == dict.fromkeys(blobs, 1), counts
    # cached now: more pulls do not reach the upstream for blobs
    before = _upstream_blob_gets(pair.upstream)
    with pair.mirror.client() as m:
        _pull(m, "hub/library/app", "v1")
    assert _upstream_blob_gets(pair.upstream) == before


def test_tags_rechecked_after_ttl_and_pushes_refused(pair: Pair) -> None:
    with pair.upstream.client() as up, pair.mirror.client() as m:
        first = push_layers(up, "library/moving", "latest", [b"one"])
        assert (
            m.head("/v2/hub/library/moving/manifests/latest").headers["docker-content-digest"]
            == first
        )
        second = push_layers(up, "library/moving", "latest", [b"two"])
        time.sleep(1.5)  # ttl 1s
        r = m.get("/v2/hub/library/moving/manifests/latest", headers={"Accept": ACCEPT})
        assert r.headers["docker-content-digest"] == second
        assert m.get("/v2/hub/library/moving/tags/list").json()["tags"] == ["latest"]
        assert_error(m.get("/v2/hub/library/nothing/manifests/v1"), 404, "MANIFEST_UNKNOWN")
        # pushes into the mirrored prefix are refused; elsewhere they work
        r = m.post("/v2/hub/library/moving/blobs/uploads/")
        assert_error(r, 403, "DENIED")
        r = m.put(
            "/v2/hub/library/moving/manifests/x",
            content=r.content or b"{}",
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert_error(r, 403, "DENIED")
        assert_error(m.delete("/v2/hub/library/moving/manifests/latest"), 403, "DENIED")
        push_blob(m, "local/app", b"local content")


def test_serves_cached_content_when_upstream_is_down(pair: Pair) -> None:
    with pair.upstream.client() as up:
        push_layers(up, "library/cached", "v1", [random_bytes("cached", 300 * 1024)])
    with pair.mirror.client() as m:
        expected = _pull(m, "hub/library/cached", "v1")
        # garbage collection keeps the mirror's cache (it has no tags of its own): the
        # pulls below, with the upstream down, are served from what survived it
        run_gc(pair.mirror.config_path, "--grace", "0s", "--delete-untagged")
        pair.upstream.stop()
        try:
            time.sleep(1.2)  # past the ttl: the HEAD fails, the cached tag is served
            assert _pull(m, "hub/library/cached", "v1") == expected
            assert _pull(m, "hub/library/app", "multi")
            # not cached and no upstream: a clear error, not a hang
            r = m.get("/v2/hub/library/unknown/manifests/v1")
            assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
        finally:
            pair.upstream.start(STARTUP)


def test_whole_registry_proxy_of_reference_registry(tmp_path: Path) -> None:
    """``proxy.remoteurl`` (the reference registry's key), upstream with Basic auth."""
    users = {"puller": "puller-pw"}
    ref = ReferenceRegistry(tmp_path / "ref", users).start()
    mirror = None
    try:
        with ref.client() as rc:
            digest = push_layers(rc, "lib/tool", "1.0", [random_bytes("tool", 100 * 1024)])
        proxy = {"remoteurl": ref.url, "username": "puller", "password": "puller-pw"}
        mirror = WharfServer(tmp_path / "m", {"proxy": proxy, "http": {"workers": 1}})
        mirror.start(STARTUP)
        with mirror.client() as m:
            seen = _pull(m, "lib/tool", "1.0")
            assert digest in seen
            assert_error(m.post("/v2/lib/other/blobs/uploads/"), 403, "DENIED")
    finally:
        if mirror is not None:
            mirror.stop()
        ref.stop()
