"""Evicting the pull-through mirror's cache (issue #16), against the reference registry
as upstream, with the mirror's wall clock moved by libfaketime (ServerClock): what
nobody pulled for ``maxage`` is evicted and GC reclaims its bytes, what was pulled
recently stays and is served with the upstream down; with ``maxbytes``, the least
recently pulled goes first; content pushed locally is never evicted; bad settings and
bad requests are refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.config import ConfigError, load_settings
from tests.support.clients import Skopeo
from tests.support.clock import ServerClock
from tests.support.gc import pull, stored_files
from tests.support.oci import OCI_MANIFEST, digest_of, image_manifest, push_image
from tests.support.reference import ReferenceRegistry
from tests.support.replication import put_blob, random_bytes
from tests.support.server import WharfServer
from tests.support.slapd import metric

pytestmark = pytest.mark.e2e
DAY = 86400.0
KiB = 1024
ROOT = Path(__file__).resolve().parents[2]
WHARF = [sys.executable, "-m", "registry.cli"]


@dataclass
class Image:
    repo: str  # on the upstream
    tag: str
    digest: str
    blobs: dict[str, int]  # digest -> size: config and layers

    @property
    def size(self) -> int:
        """What the mirror's cache holds of it: the manifest, its config and layers."""
        return sum(self.blobs.values()) + self.manifest_size

    manifest_size: int = 0

    def own(self, other: Image) -> set[str]:
        """Digests of this image that ``other`` does not share (the manifest's included)."""
        return ({self.digest} | set(self.blobs)) - ({other.digest} | set(other.blobs))


def push_upstream(
    client: httpx.Client, repo: str, tag: str, layers: list[bytes], seed: str
) -> Image:
    """An OCI image pushed to the reference registry, config unique to ``seed``."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    for blob in (config, *layers):
        put_blob(client, repo, blob)
    body = json.dumps(image_manifest(config, layers)).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    blobs = {digest_of(b): len(b) for b in (config, *layers)}
    return Image(repo, tag, digest_of(body), blobs, len(body))


def wharf_error(r: httpx.Response, status: int, code: str) -> None:
    """An error in the OCI shape with one of Wharf's own codes (UNAVAILABLE, ...)."""
    assert r.status_code == status, (r.status_code, r.text)
    errors = r.json()["errors"]
    assert errors[0]["code"] == code, errors


def evict(c: httpx.Client, dry_run: bool = False) -> dict[str, Any]:
    r = c.post("/api/mirror/evict", json={"dry_run": dry_run})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def gc_now(c: httpx.Client) -> dict[str, Any]:
    """A GC run in the server (its clock), no grace period; its result once done."""
    r = c.post("/api/gc/runs", json={"grace": "0s", "walk": True})
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = c.get(f"/api/gc/runs/{run_id}").json()
        if run["state"] != "running":
            assert run["state"] == "done", run
            result: dict[str, Any] = run["result"]
            return result
        time.sleep(0.1)
    raise AssertionError(f"GC run {run_id} did not finish")


def evicted(result: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(m["repository"], m["digest"], m["reason"]) for m in result["manifests"]}


def wait_stored(root: Path, digests: set[str]) -> dict[str, int]:
    """The stored files once all of ``digests`` are among them (a blob fetched from
    upstream is stored as its last bytes reach the client: a moment later)."""
    deadline = time.monotonic() + 10
    while True:
        files = stored_files(root)
        if digests <= set(files) or time.monotonic() > deadline:
            assert digests <= set(files), digests - set(files)
            return files
        time.sleep(0.05)


def pulls_written() -> None:
    """Pull times are buffered for half a second in each worker (the evictor writes its
    own worker's first; the other's is written meanwhile)."""
    time.sleep(1.0)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[ReferenceRegistry]:
    ref = ReferenceRegistry(tmp_path / "upstream").start()
    try:
        yield ref
    finally:
        ref.stop()


def mirror_server(
    workdir: Path, upstream: ReferenceRegistry, clock: ServerClock, **extra: Any
) -> WharfServer:
    mirrors = [{"prefix": "hub", "remoteurl": upstream.url, **extra}]
    # two workers: pulls land on either, eviction runs in whichever is asked
    config = {"mirrors": mirrors, "http": {"workers": 2}}
    return WharfServer(workdir, config, clock=clock).start()


@pytest.mark.expect_5xx(503)  # image 2 asked for with the upstream down, once evicted
def test_unpulled_content_is_evicted_and_collected(
    tmp_path: Path, upstream: ReferenceRegistry
) -> None:
    base = random_bytes("base", 120 * KiB)  # a layer both images share
    with upstream.client() as up:
        one = push_upstream(up, "library/app", "one", [base, random_bytes(1, 150 * KiB)], "1")
        two = push_upstream(up, "library/app", "two", [base, random_bytes(2, 170 * KiB)], "2")
    clock = ServerClock(tmp_path / "clock")
    mirror = mirror_server(tmp_path / "mirror", upstream, clock)
    try:
        with mirror.client() as c:
            # local content, never evicted (and tagged: GC keeps it)
            local_digest, _ = push_image(c, "local/tool", "v1", [b"pushed here " * 100])
            assert set(pull(c, "hub/library/app", "one")) == {one.digest, *one.blobs}
            assert set(pull(c, "hub/library/app", "two")) == {two.digest, *two.blobs}
            wait_stored(mirror.root, {one.digest, two.digest, *one.blobs, *two.blobs})

            clock.advance(3 * DAY)
            pull(c, "hub/library/app", "one")
            pulls_written()
            clock.advance(5 * DAY)  # image 2 unpulled for 8 days, image 1 for 5

            dry = evict(c, dry_run=True)
            assert dry["dry_run"] and dry["cached"] == 2
            assert evicted(dry) == {("hub/library/app", two.digest, "age")}
            # what only image 2 holds: its manifest, config and own layer, not the base
            assert dry["bytes"] == two.size - len(base)
            result = evict(c)
            assert not result["dry_run"]
            assert evicted(result) == {("hub/library/app", two.digest, "age")}
            assert result["evicted_by_age"] == 1 and result["evicted_by_bytes"] == 0
            assert result["bytes"] == two.size - len(base)
            assert evict(c)["evicted"] == 0  # nothing more to evict: a run is idempotent
            assert metric(mirror, "wharf_mirror_evicted_total", reason="age") == 1
            assert metric(mirror, "wharf_mirror_evicted_bytes_total") == two.size - len(base)
            assert re.search(r"mirror eviction: 1 of 2 cached manifests \(1 by age", mirror.log())
            # evicted, not deleted yet: GC reclaims the bytes
            assert set(two.own(one)) <= set(stored_files(mirror.root))

            gc = gc_now(c)
            assert gc["blobs_deleted"] >= 2  # image 2's config and own layer
            files = stored_files(mirror.root)
            assert not two.own(one) & set(files), "image 2's bytes survived GC"
            assert {one.digest, *one.blobs} <= set(files)  # image 1 whole, the base too
            assert local_digest in files

            upstream.stop()
            # image 1 is served from the cache, the upstream down (its tag's HEAD fails)
            assert set(pull(c, "hub/library/app", "one")) == {one.digest, *one.blobs}
            assert set(pull(c, "hub/library/app", one.digest)) == {one.digest, *one.blobs}
            pull(c, "local/tool", "v1")
            # image 2 is not: it needs the upstream
            r = c.get("/v2/hub/library/app/manifests/two")
            wharf_error(r, 503, "UNAVAILABLE")
            r = c.get(f"/v2/hub/library/app/manifests/{two.digest}")
            wharf_error(r, 503, "UNAVAILABLE")

            upstream.start()
            before = upstream.log_path.read_text()
            assert set(pull(c, "hub/library/app", "two")) == {two.digest, *two.blobs}
            fetched = upstream.log_path.read_text()[len(before) :]
            assert "/v2/library/app/manifests/two" in fetched  # re-fetched from upstream
            for digest in two.own(one) - {two.digest}:
                assert f"/v2/library/app/blobs/{digest}" in fetched, digest
            wait_stored(mirror.root, two.own(one))
            # and cached again: not evicted now, pulled just now
            pulls_written()
            assert evict(c)["evicted"] == 0
    finally:
        mirror.stop()


def test_byte_bound_evicts_least_recently_pulled(
    tmp_path: Path, upstream: ReferenceRegistry
) -> None:
    with upstream.client() as up:
        a = push_upstream(up, "library/a", "v1", [random_bytes("a", 200 * KiB)], "a")
        b = push_upstream(up, "library/b", "v1", [random_bytes("b", 210 * KiB)], "b")
        c_ = push_upstream(up, "library/c", "v1", [random_bytes("c", 190 * KiB)], "c")
    bound = max(a.size, b.size, c_.size) + 2 * KiB  # one image fits, two do not
    clock = ServerClock(tmp_path / "clock")
    mirror = mirror_server(tmp_path / "mirror", upstream, clock, maxbytes=bound)
    try:
        with mirror.client() as c:
            pull(c, "hub/library/a", "v1")
            clock.advance(3600)
            pull(c, "hub/library/b", "v1")
            clock.advance(3600)
            pull(c, "hub/library/a", "v1")  # a pulled again: b is now the least recent
            pulls_written()

            # `wharf mirror evict` from the command line (the registry running)
            out = subprocess.run(
                [*WHARF, "mirror", "evict", "-c", str(mirror.config_path), "--json"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            assert out.returncode == 0, out.stderr
            result = json.loads(out.stdout)
            assert evicted(result) == {("hub/library/b", b.digest, "bytes")}
            assert result["bytes"] == b.size

            clock.advance(3600)
            pull(c, "hub/library/c", "v1")
            pulls_written()
            result = evict(c)  # now a is the least recently pulled
            assert evicted(result) == {("hub/library/a", a.digest, "bytes")}
            assert result["cached"] == 2 and result["evicted_by_bytes"] == 1
            assert metric(mirror, "wharf_mirror_evicted_total", reason="bytes") == 1

            gc_now(c)
            files = stored_files(mirror.root)
            assert not ({a.digest, *a.blobs} | {b.digest, *b.blobs}) & set(files)
            assert {c_.digest, *c_.blobs} <= set(files)
            # a evicted image comes back from upstream when asked for
            assert set(pull(c, "hub/library/a", "v1")) == {a.digest, *a.blobs}
    finally:
        mirror.stop()


def test_skopeo_pulls_a_cached_image_with_the_upstream_down(
    tmp_path: Path, upstream: ReferenceRegistry
) -> None:
    """A real client: what survived eviction and GC is a complete image."""
    with upstream.client() as up:
        keep = push_upstream(up, "library/keep", "v1", [random_bytes("k", 64 * KiB)], "k")
        push_upstream(up, "library/drop", "v1", [random_bytes("d", 64 * KiB)], "d")
    clock = ServerClock(tmp_path / "clock")
    mirror = mirror_server(tmp_path / "mirror", upstream, clock)
    skopeo = Skopeo(tmp_path / "skopeo")
    try:
        src = f"docker://{mirror.host}/hub/library"
        for name in ("keep", "drop"):
            skopeo.copy(f"{src}/{name}:v1", f"dir:{tmp_path / name}", "--src-tls-verify=false")
        clock.advance(6 * DAY)
        skopeo.copy(f"{src}/keep:v1", f"dir:{tmp_path / 'again'}", "--src-tls-verify=false")
        pulls_written()
        clock.advance(2 * DAY)
        with mirror.client() as c:
            assert evict(c)["evicted"] == 1
            gc_now(c)
        upstream.stop()
        out = tmp_path / "offline"
        skopeo.copy(f"{src}/keep:v1", f"dir:{out}", "--src-tls-verify=false")
        # dir: keeps the manifest as served: the cached image, whole, from the cache alone
        assert digest_of((out / "manifest.json").read_bytes()) == keep.digest
        for digest in keep.blobs:
            assert (out / digest.split(":")[1]).exists(), digest
    finally:
        mirror.stop()


# -- refused ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"mirrors": [{"prefix": "hub", "remoteurl": "http://x", "maxage": "0s"}]}, "maxage"),
        ({"mirrors": [{"prefix": "hub", "remoteurl": "http://x", "maxage": "soon"}]}, "maxage"),
        ({"mirrors": [{"prefix": "hub", "remoteurl": "http://x", "maxbytes": 0}]}, "maxbytes"),
        ({"mirrors": [{"prefix": "hub", "remoteurl": "http://x", "maxbytes": "-5"}]}, "maxbytes"),
        (
            {"mirrors": [{"prefix": "h", "remoteurl": "http://x", "maxbytes": "9 parsecs"}]},
            "maxbytes",
        ),
        ({"mirrors": [{"prefix": "hub", "remoteurl": "http://x", "maxbytes": True}]}, "maxbytes"),
        ({"proxy": {"remoteurl": "http://x", "maxbytes": "1.5XB"}}, "maxbytes"),
        ({"mirroreviction": {"interval": "0s"}}, "interval"),
        ({"mirroreviction": {"interval": "often"}}, "interval"),
        ({"mirroreviction": {"enabled": "perhaps"}}, "enabled"),
    ],
)
def test_bad_eviction_settings_are_refused(tmp_path: Path, extra: dict[str, Any], key: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(json.dumps(extra))
    with pytest.raises(ConfigError) as e:
        load_settings(str(path))
    assert key in str(e.value)


def test_eviction_settings_and_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    mirrors = [
        {"prefix": "hub", "remoteurl": "http://x", "maxage": "36h", "maxbytes": "10GiB"},
        {"prefix": "quay", "remoteurl": "http://y"},
    ]
    path.write_text(json.dumps({"mirrors": mirrors, "mirroreviction": {"interval": "5m"}}))
    settings = load_settings(str(path))
    assert settings.mirrors[0].maxage == 36 * 3600 and settings.mirrors[0].maxbytes == 10 * 1024**3
    assert settings.mirrors[1].maxage == 7 * DAY and settings.mirrors[1].maxbytes is None
    assert settings.proxy.maxage == 7 * DAY
    assert settings.mirroreviction.enabled and settings.mirroreviction.interval == 300


def test_eviction_api_refuses_bad_requests(tmp_path: Path, upstream: ReferenceRegistry) -> None:
    mirror = WharfServer(
        tmp_path / "mirror",
        {"mirrors": [{"prefix": "hub", "remoteurl": upstream.url}], "http": {"workers": 1}},
    ).start()
    try:
        with mirror.client() as c:
            for body in (b"[1]", b"{nope", b'{"dry_run": "yes"}', b'{"dryrun": true}'):
                r = c.post("/api/mirror/evict", content=body)
                wharf_error(r, 400, "INVALID_PARAMETER")
            wharf_error(c.get("/api/mirror/evict"), 405, "UNSUPPORTED")
            assert c.post("/api/mirror/other").status_code == 404
            r = c.post("/api/mirror/evict", content=b"")
            assert r.status_code == 200 and r.json()["evicted"] == 0
    finally:
        mirror.stop()
