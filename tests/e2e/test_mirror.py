"""The pull-through mirror (issue #6): site M mirrors upstream U under the prefix ``hub``."""

from __future__ import annotations

import copy
import json
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.byteproxy import ByteProxy
from tests.support.gc import run_gc
from tests.support.oci import assert_error, digest_of, push_blob
from tests.support.postgres import PostgresCluster
from tests.support.reference import ReferenceRegistry
from tests.support.replication import (
    ACCEPT,
    push_layers,
    push_multiarch,
    random_bytes,
    wait_for,
)
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
STARTUP = 120  # seconds: a loaded machine imports slowly


class Pair:
    def __init__(self, upstream: WharfServer, proxy: ByteProxy, mirror: WharfServer) -> None:
        self.upstream, self.proxy, self.mirror = upstream, proxy, mirror


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("mirror")
    upstream = WharfServer(root / "upstream", {"http": {"workers": 1}}).start(STARTUP)
    proxy = ByteProxy(upstream.port)  # slows the upstream down when a test asks
    mirrors = [{"prefix": "hub", "remoteurl": proxy.url, "ttl": "1s"}]
    # two workers (the default on two cores): "fetched once" holds across processes
    mirror = WharfServer(root / "mirror", {"mirrors": mirrors, "http": {"workers": 2}})
    mirror.start(STARTUP)
    try:
        yield Pair(upstream, proxy, mirror)
    finally:
        mirror.stop()
        proxy.close()
        upstream.stop()


def _pull(
    client: httpx.Client, repo: str, ref: str, times: dict[str, tuple[float, float]] | None = None
) -> dict[str, str]:
    """Pull a manifest (an index: every child) and every blob; {digest: what} checked.
    With ``times``, each blob's (seconds to the first byte, seconds to the last)."""
    r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    assert digest_of(r.content) == r.headers["docker-content-digest"]
    doc = json.loads(r.content)
    seen = {r.headers["docker-content-digest"]: "manifest"}
    for child in doc.get("manifests") or []:
        seen |= _pull(client, repo, child["digest"], times)
    for blob in [doc.get("config"), *(doc.get("layers") or [])]:
        if blob:
            first, total, data = _get_blob(client, repo, blob["digest"])
            assert digest_of(data) == blob["digest"]
            seen[blob["digest"]] = "blob"
            if times is not None:
                times[blob["digest"]] = (first, total)
    return seen


def _get_blob(client: httpx.Client, repo: str, digest: str) -> tuple[float, float, bytes]:
    """(seconds to the first body byte, seconds in all, the bytes) of a blob GET."""
    started = time.monotonic()
    first = None
    body = bytearray()
    with client.stream("GET", f"/v2/{repo}/blobs/{digest}") as b:
        assert b.status_code == 200, b.read()
        for chunk in b.iter_raw():
            if first is None and chunk:
                first = time.monotonic() - started
            body += chunk
    return first or 0.0, time.monotonic() - started, bytes(body)


def _upstream_blob_gets(upstream: WharfServer) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in upstream.log().splitlines():
        if '"route":"blobs"' in line and '"method":"GET"' in line:
            entry = json.loads(line)
            counts[entry["path"].rsplit("/", 1)[1]] += 1
    return counts


def _pull_together(
    servers: list[WharfServer], repo: str, ref: str, n: int = 8
) -> list[tuple[dict[str, str], dict[str, tuple[float, float]]]]:
    """``n`` clients (separate connections, spread over ``servers``) released at once."""
    barrier = threading.Barrier(n, timeout=60)

    def one(i: int) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
        times: dict[str, tuple[float, float]] = {}
        with servers[i % len(servers)].client() as c:
            barrier.wait()
            return _pull(c, repo, ref, times), times

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_pulls_fetch_each_blob_once(pair: Pair) -> None:
    """8 clients pull an uncached image at once from a mirror with two worker processes,
    the upstream slowed to 8 MiB/s: each blob is fetched from upstream once, every client
    gets the right bytes, and those that came while the big layer was fetched got their
    first byte long before its last (they follow the fetch, not wait for it)."""
    big = random_bytes("m1", 16 * MiB)
    with pair.upstream.client() as up:
        layers = [big, random_bytes("m2", 512 * 1024), b"small"]
        push_layers(up, "library/app", "v1", layers)
        push_multiarch(up, "library/app", "multi", "mirror-multi", layers[1])
    pair.proxy.rate = 8 * MiB
    timed = []
    try:
        for ref in ("v1", "multi"):
            results = _pull_together([pair.mirror], "hub/library/app", ref)
            assert all(seen == results[0][0] for seen, _ in results)
            blobs = [d for d, what in results[0][0].items() if what == "blob"]
            counts = _upstream_blob_gets(pair.upstream)
            assert {d: counts[d] for d in blobs} == dict.fromkeys(blobs, 1), counts
            timed += [times[digest_of(big)] for _, times in results if digest_of(big) in times]
    finally:
        pair.proxy.rate = None
    # the big layer took about 2 s to fetch: clients that overlapped it were streamed the
    # bytes as they were stored (the fetching one as they arrived), not made to wait
    overlapped = [(first, total) for first, total in timed if total > 1.0]
    assert len(overlapped) >= 2, timed
    assert all(first < total / 2 for first, total in overlapped), timed
    # cached now: more pulls do not reach the upstream for blobs
    before = _upstream_blob_gets(pair.upstream)
    with pair.mirror.client() as m:
        _pull(m, "hub/library/app", "v1")
    assert _upstream_blob_gets(pair.upstream) == before


def test_concurrent_pulls_without_growing_uploads(pair: Pair, tmp_path: Path) -> None:
    """Storage whose uploads cannot be read while written (in memory here, S3 likewise):
    the clients that did not start the fetch wait for the stored blob; still one fetch."""
    mirrors = [{"prefix": "hub", "remoteurl": pair.proxy.url}]
    mirror = WharfServer(tmp_path / "m", {"mirrors": mirrors, "http": {"workers": 1}})
    mirror.config["storage"] = {"inmemory": {}}
    mirror.config["database"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"}
    with pair.upstream.client() as up:
        layers = [random_bytes("mem1", 4 * MiB), b"mem"]
        push_layers(up, "library/memory", "v1", layers)
    mirror.start(STARTUP)
    before = _upstream_blob_gets(pair.upstream)  # the config may be the other mirror's too
    pair.proxy.rate = 8 * MiB
    try:
        results = _pull_together([mirror], "hub/library/memory", "v1", 6)
    finally:
        pair.proxy.rate = None
        mirror.stop()
    assert all(seen == results[0][0] for seen, _ in results)
    blobs = [d for d, what in results[0][0].items() if what == "blob"]
    counts = _upstream_blob_gets(pair.upstream) - before
    assert {d: counts[d] for d in blobs} == dict.fromkeys(blobs, 1), counts


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


@pytest.mark.expect_5xx(503)  # what is not cached: 503 UNAVAILABLE while the upstream is down
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


def test_catalog_lists_mirrored_repositories(pair: Pair) -> None:
    """Repositories the mirror serves are in ``/v2/_catalog`` with the local ones, in
    order, and every page of a paginated walk follows on from the last."""
    with pair.upstream.client() as up:
        for name in ("library/cat-a", "library/cat-b", "tools/cat-c"):
            push_layers(up, name, "v1", [name.encode()])
    with pair.mirror.client() as m:
        for name in ("library/cat-b", "tools/cat-c", "library/cat-a"):
            _pull(m, f"hub/{name}", "v1")
        push_layers(m, "local/cat", "v1", [b"local"])
        push_layers(m, "zz/cat", "v1", [b"local z"])
        everything = m.get("/v2/_catalog").json()["repositories"]
        assert {"hub/library/cat-a", "hub/library/cat-b", "hub/tools/cat-c"} <= set(everything)
        assert {"local/cat", "zz/cat"} <= set(everything)
        assert everything == sorted(set(everything)), everything
        walked: list[str] = []
        url = "/v2/_catalog?n=2"
        while url:
            r = m.get(url)
            page = r.json()["repositories"]
            assert 1 <= len(page) <= 2, page
            walked += page
            link = r.headers.get("link", "")
            url = link[1 : link.index(">")] if link else ""
        assert walked == everything
        after = everything.index("hub/library/cat-a") + 1
        r = m.get("/v2/_catalog", params={"n": 2, "last": "hub/library/cat-a"})
        assert r.json()["repositories"] == everything[after : after + 2]


class Nodes:
    def __init__(
        self,
        upstream: WharfServer,
        proxy: ByteProxy,
        a: WharfServer,
        b: WharfServer,
        cluster: PostgresCluster,
        database: str,
    ) -> None:
        self.upstream, self.proxy, self.a, self.b = upstream, proxy, a, b
        self.cluster, self.database = cluster, database
        self.storage = Path(a.config["storage"]["filesystem"]["rootdirectory"])

    def leases(self) -> int:
        return int(self.cluster.psql("SELECT count(*) FROM mirror_fetches", self.database))


@pytest.fixture(scope="module")
def nodes(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """Two mirror nodes (one worker each) sharing one PostgreSQL database and one storage
    root, in front of one upstream reached through a proxy that can slow it down; fetch
    leases of 2 s, so that a dead fetcher's is taken over quickly."""
    root = tmp_path_factory.mktemp("mirror-nodes")
    upstream = WharfServer(root / "upstream", {"http": {"workers": 1}}).start(STARTUP)
    proxy = ByteProxy(upstream.port)
    database = f"mirror_{uuid.uuid4().hex[:12]}"
    config = {
        "http": {"workers": 1},
        "database": {"url": postgres.create_database(database)},
        "storage": {"filesystem": {"rootdirectory": str(root / "shared-storage")}},
        "mirrors": [{"prefix": "hub", "remoteurl": proxy.url, "fetchlease": "2s"}],
    }
    servers = [WharfServer(root / n, copy.deepcopy(config)) for n in ("node-a", "node-b")]
    try:
        for server in servers:
            server.start(STARTUP)
        yield Nodes(upstream, proxy, servers[0], servers[1], postgres, database)
    finally:
        for server in servers:
            server.stop()
        proxy.close()
        upstream.stop()


def test_two_nodes_fetch_each_blob_once(nodes: Nodes) -> None:
    """8 clients, half on each node, pull an uncached image at once: one fetch per blob
    for the whole registry."""
    with nodes.upstream.client() as up:
        layers = [random_bytes("n1", 8 * MiB), random_bytes("n2", 512 * 1024), b"tiny"]
        push_layers(up, "library/shared", "v1", layers)
    nodes.proxy.rate = 8 * MiB
    try:
        results = _pull_together([nodes.a, nodes.b], "hub/library/shared", "v1")
    finally:
        nodes.proxy.rate = None
    assert all(seen == results[0][0] for seen, _ in results)
    blobs = [d for d, what in results[0][0].items() if what == "blob"]
    counts = _upstream_blob_gets(nodes.upstream)
    assert {d: counts[d] for d in blobs} == dict.fromkeys(blobs, 1), counts
    assert nodes.leases() == 0  # every fetch let go of its lease


def test_fetching_node_killed_mid_blob(nodes: Nodes) -> None:
    """Node A fetches a blob (slowly) for its client, node B's client follows that fetch;
    A is killed -9 mid-blob: once A's lease expires, B takes the fetch over and its
    client gets the whole blob, right."""
    data = random_bytes("killed", 4 * MiB)
    digest = digest_of(data)
    with nodes.upstream.client() as up:
        push_layers(up, "library/killed", "v1", [data])
    path = f"/v2/hub/library/killed/blobs/{digest}"
    received = {"a": 0, "b": 0}
    result: dict[str, object] = {}

    def pull(name: str, server: WharfServer) -> None:
        try:
            with server.client() as c, c.stream("GET", path) as r:
                assert r.status_code == 200, r.read()
                body = bytearray()
                for chunk in r.iter_raw():
                    body += chunk
                    received[name] = len(body)
                result[name] = bytes(body)
        except Exception as e:  # node A's client loses its connection
            result[name] = e

    nodes.proxy.rate = MiB // 2  # about 8 s for the blob: killed long before its end
    threads = {
        n: threading.Thread(target=pull, args=(n, s)) for n, s in (("a", nodes.a), ("b", nodes.b))
    }
    try:
        threads["a"].start()
        wait_for(lambda: received["a"] > 0, 30, "node A's client streamed")
        threads["b"].start()
        wait_for(lambda: received["b"] > 0, 30, "node B's client following A's fetch")
        assert received["a"] < len(data)  # mid-blob
        nodes.a.stop(signal.SIGKILL)
    finally:
        nodes.proxy.rate = None
    threads["a"].join(60)
    threads["b"].join(60)
    assert isinstance(result.get("a"), Exception) or received["a"] < len(data)
    assert result.get("b") == data, received  # whole and right
    # A's fetch and B's take-over (A's GET is logged when the upstream sees it broken)
    wait_for(lambda: _upstream_blob_gets(nodes.upstream)[digest] == 2, 10, "two fetches")
    wait_for(lambda: nodes.leases() == 0, 10, "the take-over's lease released")
    uploads = nodes.storage / "uploads"  # A's partial upload went with the take-over
    assert not uploads.exists() or not any(uploads.iterdir()), list(uploads.iterdir())
    with nodes.b.client() as c:  # stored now: no more upstream fetches
        assert digest_of(_get_blob(c, "hub/library/killed", digest)[2]) == digest
    assert _upstream_blob_gets(nodes.upstream)[digest] == 2
