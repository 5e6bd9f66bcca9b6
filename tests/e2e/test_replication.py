"""Replication between two Wharf sites and the reference registry (issue #6).

Site A holds the images; its rules copy them to site B (scheduled, on push), to and from
the reference registry (htpasswd auth), and through a TCP proxy that cuts the connection
mid-blob. Every check reads the target back over the distribution API.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.auth import PASSWORDS, token_config
from tests.support.byteproxy import ByteProxy
from tests.support.clients import make_self_signed_cert
from tests.support.oci import digest_of
from tests.support.reference import ReferenceRegistry
from tests.support.replication import (
    ACCEPT,
    assert_complete,
    push_layers,
    push_multiarch,
    random_bytes,
    replicate,
    replicate_cli,
    tag_digests,
    wait_for,
)
from tests.support.server import WharfServer, _merge

pytestmark = pytest.mark.e2e

KiB = 1024
MiB = 1024 * KiB
REPOS = 20
BIG = 6 * MiB
REF_USERS = {"robot": "robot-pw"}
STARTUP = 120  # seconds: a loaded machine imports slowly
ONE_WORKER: dict[str, Any] = {"http": {"workers": 1}}


class Sites:
    def __init__(self, a: WharfServer, b: WharfServer, proxy: ByteProxy, ref: ReferenceRegistry):
        self.a, self.b, self.proxy, self.ref = a, b, proxy, ref


def _rule(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "remote": {"url": url}, **extra}


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    root = tmp_path_factory.mktemp("replication")
    b = WharfServer(root / "b", ONE_WORKER).start(STARTUP)
    ref = ReferenceRegistry(root / "ref", REF_USERS).start()
    proxy = ByteProxy(b.port)
    ref_remote = {"url": ref.url, "username": "robot", "password": REF_USERS["robot"]}
    rules = [
        # every 2 seconds (croniter's sixth field is seconds)
        _rule("sync", b.url, repositories=["apps/*"], schedule="* * * * * */2", maxparallel=8),
        _rule("live", b.url, repositories=["live/*"], onpush=True, deletes=True),
        _rule("cut", proxy.url, repositories=["big/one"], retries=0, chunksize="1M"),
        _rule("prune", b.url, repositories=["prune/*"], deletes=True, prefix="mirror"),
        {"name": "to-ref", "remote": ref_remote, "repositories": ["ref/*"], "deletes": True},
    ]
    a = WharfServer(root / "a", {"replication": {"rules": rules}})
    # site B pulls from the reference registry (run with `wharf replicate` on B's config)
    pull = {"name": "from-ref", "remote": ref_remote, "direction": "pull"}
    pull |= {"repositories": ["ref/*"], "prefix": "copied", "tags": ["re:v[0-9]+"]}
    b.config["replication"] = {"rules": [pull]}
    b.config_path.write_text(yaml.safe_dump(b.config))
    a.start(STARTUP)  # two workers: their schedulers share the rules through leases
    try:
        yield Sites(a, b, proxy, ref)
    finally:
        a.stop()
        proxy.close()
        ref.stop()
        b.stop()


def _runs(server: WharfServer, rule: str) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get("/api/replication/runs", params={"rule": rule})
        assert r.status_code == 200, r.text
        runs: list[dict[str, Any]] = r.json()["runs"]
        return runs


def _finished_after(server: WharfServer, rule: str, since: float) -> dict[str, Any] | None:
    for run in _runs(server, rule):
        if run["started_at"] >= since and run["finished_at"] is not None:
            return run
    return None


def _blobs_of(
    client: httpx.Client, images: dict[str, dict[str, str]]
) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Every blob of the tagged images (children of indexes too): its size, and the
    repositories holding it."""
    sizes: dict[str, int] = {}
    holders: dict[str, set[str]] = {}

    def walk(repo: str, ref: str) -> None:
        r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        assert r.status_code == 200, r.text
        doc = r.json()
        for child in doc.get("manifests") or []:
            walk(repo, child["digest"])
        for blob in [doc.get("config"), *(doc.get("layers") or [])]:
            if blob:
                sizes[blob["digest"]] = blob["size"]
                holders.setdefault(blob["digest"], set()).add(repo)

    for repo, tags in images.items():
        for tag in tags:
            walk(repo, tag)
    return sizes, holders


def test_scheduled_rule_syncs_repositories(sites: Sites) -> None:
    """20 repositories of multi-layer and multi-arch images reach site B on schedule,
    every tag with the same digest, complete; the next run moves no blob bytes."""
    base = random_bytes("base", 256 * KiB)  # shared by every image: mounted, not re-sent
    expected: dict[str, dict[str, str]] = {}
    t0 = time.time()
    with sites.a.client() as a:
        for i in range(REPOS):
            repo = f"apps/svc{i:02d}"
            push_layers(a, repo, "v1", [base, random_bytes(f"{i}-1", 64 * KiB)])
            push_layers(a, repo, "v2", [base, random_bytes(f"{i}-2", 96 * KiB), b"x" * i])
            if i % 4 == 0:
                push_multiarch(a, repo, "multi", f"m{i}", base)
            expected[repo] = tag_digests(a, repo)
    with sites.b.client() as b:
        wait_for(
            lambda: all(tag_digests(b, repo) == tags for repo, tags in expected.items()),
            60,
            "site B in step with site A",
        )
        for repo, tags in expected.items():
            for tag in tags:
                assert_complete(b, repo, tag)
    # the next scheduled run: every tag already in step, no blob moves
    in_step = time.time()
    again = wait_for(lambda: _finished_after(sites.a, "sync", in_step), 30, "a later run")
    total_tags = sum(len(t) for t in expected.values())
    assert again["status"] == "ok" and again["trigger"] == "schedule", again
    assert again["tags_skipped"] == total_tags and again["tags_copied"] == 0
    assert again["bytes"] == 0 and again["blobs_copied"] == 0
    # the runs that did the copy: each tag copied once, the shared layer mounted
    runs = [r for r in _runs(sites.a, "sync") if t0 <= r["started_at"] < in_step]
    assert runs and all(r["status"] == "ok" for r in runs), runs
    assert sum(r["tags_copied"] for r in runs) == total_tags
    # each blob's bytes went once, but a blob shared by repositories (the base layer, the
    # configs) once per run that copied anything, however many repositories hold it (the
    # others mount it): how many runs the copy took depends on timing, the bound does not
    with sites.a.client() as a:
        sizes, holders = _blobs_of(a, expected)
    unique = sum(sizes.values())
    shared = sum(size for digest, size in sizes.items() if len(holders[digest]) > 1)
    copying = [r for r in runs if r["bytes"]]
    sent = sum(r["bytes"] for r in runs)
    assert unique <= sent <= unique + (len(copying) - 1) * shared, (sent, unique, copying)
    # every repository got the base layer by a copy (at most one per run) or a mount
    assert sum(r["blobs_mounted"] for r in runs) >= REPOS - len(copying), runs
    # site A runs two workers: the lease lets one run of the rule happen at a time
    spans = sorted(
        (r["started_at"], r["finished_at"] or time.time()) for r in _runs(sites.a, "sync")
    )
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans
    # status through the API: last run and lag of each rule
    with sites.a.client() as a:
        rules = {r["name"]: r for r in a.get("/api/replication/rules").json()["rules"]}
    assert rules["sync"]["last_success"]["status"] == "ok"
    assert 0 <= rules["sync"]["lag_seconds"] < 30
    assert "password" not in str(rules["to-ref"]["remote"])
    metrics = httpx.get(f"{sites.a.url}/metrics").text
    assert 'wharf_replication_lag_seconds{rule="sync"}' in metrics


def test_on_push_appears_on_other_site_within_seconds(sites: Sites) -> None:
    with sites.a.client() as a, sites.b.client() as b:
        pushed = time.monotonic()
        digest = push_layers(a, "live/web", "v1", [random_bytes("live", 200 * KiB)])
        wait_for(lambda: tag_digests(b, "live/web").get("v1") == digest, 10, "on-push copy")
        assert time.monotonic() - pushed < 10
        assert_complete(b, "live/web", "v1")
        # a tag moved to a new image follows, and a deleted tag goes (deletes: true)
        digest2 = push_layers(a, "live/web", "v1", [random_bytes("live2", 100 * KiB)])
        push_layers(a, "live/web", "keep", [random_bytes("keep", 10 * KiB)])
        wait_for(lambda: tag_digests(b, "live/web").get("v1") == digest2, 10, "moved tag")
        wait_for(lambda: "keep" in tag_digests(b, "live/web"), 10, "second tag")
        assert a.delete("/v2/live/web/manifests/v1").status_code == 202
        wait_for(lambda: "v1" not in tag_digests(b, "live/web"), 10, "tag delete")
        assert set(tag_digests(b, "live/web")) == {"keep"}
    # every on-push run is in the history
    assert all(r["trigger"] == "onpush" and r["status"] == "ok" for r in _runs(sites.a, "live"))


def test_manifest_deleted_by_digest_propagates(sites: Sites) -> None:
    """A manifest deleted by digest at A (with its two tags) goes from B too, by digest,
    through the on-push trigger of a rule with ``deletes: true``; another stays."""
    with sites.a.client() as a, sites.b.client() as b:
        gone = push_layers(a, "live/bydigest", "v1", [random_bytes("bydigest", 50 * KiB)])
        r = a.get(f"/v2/live/bydigest/manifests/{gone}", headers={"Accept": ACCEPT})
        headers = {"Content-Type": r.headers["content-type"]}
        put = a.put("/v2/live/bydigest/manifests/also", content=r.content, headers=headers)
        assert put.status_code == 201, put.text
        kept = push_layers(a, "live/bydigest", "kept", [random_bytes("kept", 5 * KiB)])
        expected = {"v1": gone, "also": gone, "kept": kept}
        wait_for(lambda: tag_digests(b, "live/bydigest") == expected, 10, "on-push copies")
        since = time.time()
        assert a.delete(f"/v2/live/bydigest/manifests/{gone}").status_code == 202
        wait_for(
            lambda: b.head(f"/v2/live/bydigest/manifests/{gone}").status_code == 404,
            10,
            "the manifest deleted at B",
        )
        assert tag_digests(b, "live/bydigest") == {"kept": kept}
        assert_complete(b, "live/bydigest", "kept")
    run = wait_for(lambda: _finished_after(sites.a, "live", since), 10, "the delete's run")
    assert run["status"] == "ok" and run["tags_deleted"] == 1, run


def test_interrupted_blob_resumes_on_next_run(sites: Sites) -> None:
    """The proxy in front of site B cuts the upload mid-blob; the next run sends only
    the rest of the blob, and a third run sends no blob bytes at all."""
    big = random_bytes("big", BIG)
    with sites.a.client() as a:
        digest = push_layers(a, "big/one", "v1", [big])
    sites.proxy.reset()
    sites.proxy.cut_after(BIG // 2)
    first = replicate(sites.a.config_path, "cut")
    assert first.returncode == 1, first.stderr
    assert sites.proxy.cuts == 1
    with sites.b.client() as b:
        assert tag_digests(b, "big/one") == {}  # no tag before its content is complete
    sites.proxy.reset()
    second = replicate(sites.a.config_path, "cut")
    assert second.returncode == 0, second.stderr
    resent = sites.proxy.sent
    assert resent < BIG * 0.75, resent  # only what the target had not received
    with sites.b.client() as b:
        assert tag_digests(b, "big/one") == {"v1": digest}
        assert_complete(b, "big/one", "v1")
        size = b.head(f"/v2/big/one/blobs/{digest_of(big)}").headers["content-length"]
        assert int(size) == BIG
    sites.proxy.reset()
    third = replicate(sites.a.config_path, "cut")
    assert third.returncode == 0, third.stderr
    assert sites.proxy.sent < 16 * KiB  # a few HEADs, no blob bytes
    runs = _runs(sites.a, "cut")
    assert [r["status"] for r in runs[:3]] == ["ok", "ok", "failed"]
    assert runs[0]["bytes"] == 0 and runs[1]["bytes"] < BIG * 0.75


def test_deleted_tag_propagates_when_asked(sites: Sites) -> None:
    with sites.a.client() as a, sites.b.client() as b:
        for tag in ("v1", "v2", "v3"):
            push_layers(a, "prune/app", tag, [random_bytes(f"prune-{tag}", 8 * KiB)])
        assert replicate(sites.a.config_path, "prune").returncode == 0
        assert set(tag_digests(b, "mirror/prune/app")) == {"v1", "v2", "v3"}
        assert a.delete("/v2/prune/app/manifests/v2").status_code == 202
        result = replicate(sites.a.config_path, "prune")
        assert result.returncode == 0, result.stderr
        assert set(tag_digests(b, "mirror/prune/app")) == {"v1", "v3"}
    assert _runs(sites.a, "prune")[0]["tags_deleted"] == 1


def test_reference_registry_as_target_and_source(sites: Sites) -> None:
    """A -> reference (Basic auth) with `wharf replicate`, then reference -> B (a pull
    rule with a destination prefix and a tag regex)."""
    base = random_bytes("ref-base", 128 * KiB)
    expected = {}
    with sites.a.client() as a:
        for name in ("ref/one", "ref/two"):
            push_layers(a, name, "v1", [base, random_bytes(name, 300 * KiB)])
            push_layers(a, name, "latest", [base, random_bytes(name + "l", 30 * KiB)])
            expected[name] = tag_digests(a, name)
        push_multiarch(a, "ref/two", "v2", "ref-multi", base)
        expected["ref/two"] = tag_digests(a, "ref/two")
    result = replicate_cli(sites.a.config_path, "to-ref")  # the command itself
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("ok: tags 5 copied"), result.stderr
    with sites.ref.client() as ref:
        for name, tags in expected.items():
            assert tag_digests(ref, name) == tags
            for tag in tags:
                assert_complete(ref, name, tag)
    result = replicate(sites.b.config_path, "from-ref")
    assert result.returncode == 0, result.stderr
    with sites.b.client() as b:
        for name, tags in expected.items():
            copied = tag_digests(b, f"copied/{name}")
            assert copied == {t: d for t, d in tags.items() if t != "latest"}
            for tag in copied:
                assert_complete(b, f"copied/{name}", tag)
    # a tag deleted at A goes from the reference too (by digest: it deletes no tags)
    with sites.a.client() as a:
        assert a.delete("/v2/ref/one/manifests/latest").status_code == 202
    assert replicate(sites.a.config_path, "to-ref").returncode == 0
    with sites.ref.client() as ref:
        assert set(tag_digests(ref, "ref/one")) == {"v1"}


def test_api_requires_known_rule_and_queues_a_run(sites: Sites) -> None:
    with sites.a.client() as a:
        assert a.post("/api/replication/rules/nope/run").status_code == 404
        push_layers(a, "prune/queued", "v1", [b"queued"])
        since = time.time()
        r = a.post("/api/replication/rules/prune/run")
        assert r.status_code == 202, r.text
    run = wait_for(lambda: _finished_after(sites.a, "prune", since), 15, "the queued run")
    assert run["trigger"] == "manual" and run["status"] == "ok"
    with sites.b.client() as b:
        assert "v1" in tag_digests(b, "mirror/prune/queued")


def test_bad_credentials_fail_the_run_clearly(tmp_path: Path, sites: Sites) -> None:
    config = tmp_path / "bad.yml"

    cfg = dict(sites.a.config)
    cfg["replication"] = {
        "rules": [
            {
                "name": "bad",
                "remote": {"url": sites.ref.url, "username": "robot", "password": "wrong"},
                "repositories": ["ref/one"],
            }
        ]
    }
    config.write_text(yaml.safe_dump(cfg))
    result = replicate(config, "bad")
    assert result.returncode == 1
    assert "401" in result.stderr or "UNAUTHORIZED" in result.stderr, result.stderr


def test_token_auth_remote(tmp_path: Path, sites: Sites) -> None:
    """A Wharf remote in token mode (its built-in token service): the replicator follows
    the Bearer challenge, with scopes for two repositories when it mounts."""
    remote = WharfServer(tmp_path / "tok" / "server", {"http": {"workers": 1}})
    _merge(remote.config, token_config(tmp_path / "tok", remote.port))  # built-in token service
    remote.auth = True
    remote.start(STARTUP)
    try:
        base = random_bytes("tok-base", 200 * KiB)
        expected = {}
        with sites.a.client() as a:
            for name in ("team-a/one", "team-a/two"):
                push_layers(a, name, "v1", [base, random_bytes(name, 20 * KiB)])
                expected[name] = tag_digests(a, name)
        rule = {
            "name": "tok",
            "remote": {"url": remote.url, "username": "alice", "password": PASSWORDS["alice"]},
            "repositories": ["team-a/*"],
            "maxparallel": 1,
        }
        config = tmp_path / "tok.yml"
        config.write_text(yaml.safe_dump({**sites.a.config, "replication": {"rules": [rule]}}))
        result = replicate(config, "tok")
        assert result.returncode == 0, result.stderr
        assert "2 mounted" in result.stderr  # base layer and config, into the second repo
        admin = httpx.BasicAuth("admin", PASSWORDS["admin"])
        token = httpx.get(
            f"{remote.url}/token",
            params={"service": "wharf-test", "scope": "repository:team-a/one:pull"},
            auth=admin,
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=remote.url, headers=headers) as r:
            assert tag_digests(r, "team-a/one") == expected["team-a/one"]
            assert_complete(r, "team-a/one", "v1")
    finally:
        remote.stop()


def test_broken_blob_resumes_within_the_run(sites: Sites) -> None:
    """With retries, a cut mid-blob is resumed from the target's offset in the same run."""
    big = random_bytes("big-two", BIG)
    with sites.a.client() as a:
        digest = push_layers(a, "big/two", "v1", [big])
    config = sites.a.workdir / "retry.yml"
    rule = _rule("retry", sites.proxy.url, repositories=["big/two"], chunksize="1M")
    config.write_text(yaml.safe_dump({**sites.a.config, "replication": {"rules": [rule]}}))
    sites.proxy.reset()
    cuts = sites.proxy.cuts
    sites.proxy.cut_after(BIG // 3)
    result = replicate(config, "retry")
    assert result.returncode == 0, result.stderr
    assert sites.proxy.cuts == cuts + 1
    assert sites.proxy.sent < BIG * 1.25  # the cut third is not sent again
    with sites.b.client() as b:
        assert tag_digests(b, "big/two") == {"v1": digest}
        assert_complete(b, "big/two", "v1")


def test_tls_remote_verified_with_cacert(tmp_path: Path, sites: Sites) -> None:
    cert, key = make_self_signed_cert(tmp_path / "tls")
    remote = WharfServer(
        tmp_path / "tls-site",
        {"http": {"workers": 1, "tls": {"certificate": str(cert), "key": str(key)}}},
    ).start(STARTUP)
    try:
        with sites.a.client() as a:
            digest = push_layers(a, "tls/app", "v1", [b"over tls"])
        rules = [
            _rule("ca", remote.url, repositories=["tls/app"]),
            _rule("unverified", remote.url, repositories=["tls/app"]),
            _rule("insecure", remote.url, repositories=["tls/app"]),
        ]
        rules[0]["remote"]["cacert"] = str(cert)
        rules[2]["remote"]["insecure"] = True
        config = tmp_path / "tls.yml"
        config.write_text(yaml.safe_dump({**sites.a.config, "replication": {"rules": rules}}))
        failed = replicate(config, "unverified")
        assert failed.returncode == 1
        assert "CERTIFICATE_VERIFY_FAILED" in failed.stderr, failed.stderr
        assert replicate(config, "ca").returncode == 0
        assert replicate(config, "insecure").returncode == 0
        with remote.client() as r:
            assert tag_digests(r, "tls/app") == {"v1": digest}
    finally:
        remote.stop()
