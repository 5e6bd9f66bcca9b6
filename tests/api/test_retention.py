"""Tag retention (#16) against a real ``wharf serve``: a rule of each kind with real pushes
and pulls, ages made with the server's clock (ServerClock); referrers going with their
subject and index children staying with the index; a dry run listing exactly what the
real run removes; retention then GC reclaiming the bytes the dry run predicted, on
SQLite and PostgreSQL; last-pull times in the API; the roles; bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clock import ServerClock
from tests.support.gc import stored_files
from tests.support.oci import (
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    push_blob,
    push_image,
)
from tests.support.postgres import PostgresCluster
from tests.support.projects import as_user, basic_config, make_team
from tests.support.server import WharfServer

DAY = 86400.0
ROOT = Path(__file__).resolve().parents[2]
OPEN_CONFIG: dict[str, Any] = {
    "http": {"workers": 1},
    "storage": {"delete": {"enabled": True}},
    "gc": {"grace": "0s"},
}


@pytest.fixture(scope="module")
def clock(tmp_path_factory: pytest.TempPathFactory) -> ServerClock:
    return ServerClock(tmp_path_factory.mktemp("clock") / "clock")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, clock: ServerClock) -> Iterator[WharfServer]:
    wharf = WharfServer(tmp_path_factory.mktemp("retention"), OPEN_CONFIG, clock=clock).start()
    try:
        yield wharf
    finally:
        wharf.stop()


@pytest.fixture
def c(server: WharfServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def project() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


def push(c: httpx.Client, repo: str, tag: str) -> str:
    digest, _ = push_image(c, repo, tag, [f"{repo}:{tag} {uuid.uuid4()}".encode()])
    return digest


def pull(c: httpx.Client, repo: str, ref: str) -> None:
    r = c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert r.status_code == 200, r.text


def pulls(c: httpx.Client, repo: str) -> dict[str, Any]:
    r = c.get("/api/retention/pulls", params={"repository": repo})
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def wait_pulled(c: httpx.Client, repo: str, tags: list[str], after: str | None = None) -> None:
    """Until the batched pull times of ``tags`` are written (later than ``after``)."""
    for _ in range(100):
        seen = {t["tag"]: t["last_pulled_at"] for t in pulls(c, repo)["tags"]}
        if all(seen.get(t) is not None and (after is None or seen[t] > after) for t in tags):
            return
        time.sleep(0.1)
    raise AssertionError(f"pulls of {tags} in {repo} never recorded: {seen}")


def tags(c: httpx.Client, repo: str) -> list[str]:
    r = c.get(f"/v2/{repo}/tags/list")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return list(r.json().get("tags") or [])


def set_rules(c: httpx.Client, name: str, rules: list[dict[str, Any]], **policy: Any) -> None:
    r = c.put(f"/api/projects/{name}/retention", json={"rules": rules, **policy})
    assert r.status_code == 200, r.text
    assert len(r.json()["rules"]) == len(rules)


def run(c: httpx.Client, name: str, dry_run: bool, gc: bool = False) -> dict[str, Any]:
    r = c.post(f"/api/projects/{name}/retention/runs", json={"dry_run": dry_run, "gc": gc})
    assert r.status_code == 202, r.text
    url = r.json()["url"]
    for _ in range(300):
        found: dict[str, Any] = c.get(url).json()
        if found["status"] != "running":
            assert found["status"] == "done", found
            assert found["summary"]["errors"] == [], found
            return found
        time.sleep(0.1)
    raise AssertionError(f"run {url} never ended")


def removed(found: dict[str, Any]) -> dict[str, set[str]]:
    return {c["repository"]: set(c["tags"]) for c in found["candidates"]}


def dry_then_real(c: httpx.Client, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dry run and then the real one: they decide the same."""
    dry = run(c, name, True)
    real = run(c, name, False)
    assert dry["candidates"] == real["candidates"]
    assert dry["summary"]["bytes_predicted"] == real["summary"]["bytes_predicted"]
    return dry, real


def test_latest_pushed_keeps_the_newest(
    c: httpx.Client, clock: ServerClock, server: WharfServer
) -> None:
    name = project()
    repo, other = f"{name}/app", f"{name}/tools/lint"
    digests = {}
    for tag in ("v1", "v2", "v3", "v4"):
        digests[tag] = push(c, repo, tag)
        push(c, other, tag)
        clock.advance(3600)
    set_rules(c, name, [{"repositories": ["app"], "kind": "latest_pushed", "count": 2}])
    dry, real = dry_then_real(c, name)
    assert removed(dry) == {repo: {"v1", "v2"}}
    assert dry["dry_run"] and dry["summary"]["tags_removed"] == 2
    assert real["summary"]["manifests_removed"] == 2 and real["progress"]["done"] == 2
    assert tags(c, repo) == ["v3", "v4"]
    assert tags(c, other) == ["v1", "v2", "v3", "v4"]  # no rule selects it: untouched
    assert c.get(f"/v2/{repo}/manifests/{digests['v1']}").status_code == 404
    history = c.get(f"/api/projects/{name}/retention/runs").json()["runs"]
    assert [(h["id"], h["dry_run"]) for h in history] == [(real["id"], False), (dry["id"], True)]


def test_a_rule_never_removes_an_immutable_tag(c: httpx.Client, clock: ServerClock) -> None:
    name = project()
    repo = f"{name}/app"
    for tag in ("release-1", "v2", "release-3", "v4"):
        push(c, repo, tag)
        clock.advance(3600)
    r = c.post(
        f"/api/projects/{name}/immutable", json={"repository": f"{name}/**", "tag": "release-*"}
    )
    assert r.status_code == 201, r.text
    set_rules(c, name, [{"repositories": ["**"], "kind": "latest_pushed", "count": 1}])
    dry, real = dry_then_real(c, name)
    # only v4 is kept by the rule; the release tags stay because they are immutable
    assert removed(dry) == removed(real) == {repo: {"v2"}}
    assert tags(c, repo) == ["release-1", "release-3", "v4"]


def test_latest_pulled_keeps_the_most_recently_pulled(c: httpx.Client, clock: ServerClock) -> None:
    name = project()
    repo = f"{name}/app"
    for tag in ("a", "b", "c", "d"):
        push(c, repo, tag)
    pull(c, repo, "b")
    wait_pulled(c, repo, ["b"])
    clock.advance(3600)
    pull(c, repo, "d")
    pull(c, repo, "c")
    wait_pulled(c, repo, ["c", "d"])
    set_rules(c, name, [{"kind": "latest_pulled", "count": 2}])
    dry, _ = dry_then_real(c, name)
    assert removed(dry) == {repo: {"a", "b"}}  # a never pulled, b pulled longest ago
    assert tags(c, repo) == ["c", "d"]


def test_pushed_within_keeps_the_recent(c: httpx.Client, clock: ServerClock) -> None:
    name = project()
    repo = f"{name}/app"
    push(c, repo, "old")
    push(c, repo, "older-but-kept")
    clock.advance(10 * DAY)
    push(c, repo, "new")
    set_rules(
        c,
        name,
        [
            {"kind": "pushed_within", "days": 7},
            {"kind": "always", "tags": ["*-kept"]},
        ],
    )
    dry, _ = dry_then_real(c, name)
    assert removed(dry) == {repo: {"old"}}
    assert tags(c, repo) == ["new", "older-but-kept"]


def test_pulled_within_keeps_what_was_pulled_lately(c: httpx.Client, clock: ServerClock) -> None:
    name = project()
    repo = f"{name}/app"
    push(c, repo, "x")
    push(c, repo, "y")
    push(c, repo, "never")
    pull(c, repo, "x")
    pull(c, repo, "y")
    wait_pulled(c, repo, ["x", "y"])
    first = {t["tag"]: t["last_pulled_at"] for t in pulls(c, repo)["tags"]}
    clock.advance(10 * DAY)
    pull(c, repo, "y")
    wait_pulled(c, repo, ["y"], after=first["y"])
    shown = pulls(c, repo)
    by_tag = {t["tag"]: t for t in shown["tags"]}
    assert by_tag["never"]["last_pulled_at"] is None and by_tag["never"]["pushed_at"]
    assert by_tag["y"]["last_pulled_at"] > by_tag["x"]["last_pulled_at"]
    assert {m["digest"] for m in shown["manifests"]} == {
        by_tag["x"]["digest"],
        by_tag["y"]["digest"],
    }
    set_rules(c, name, [{"kind": "pulled_within", "days": 7}])
    dry, _ = dry_then_real(c, name)
    assert removed(dry) == {repo: {"x", "never"}}
    assert tags(c, repo) == ["y"]


def test_a_pull_by_digest_counts_for_the_manifest_and_its_tags(
    c: httpx.Client, clock: ServerClock
) -> None:
    name = project()
    repo = f"{name}/app"
    digest = push(c, repo, "by-digest")
    push(c, repo, "unpulled")
    pull(c, repo, digest)
    wait_pulled(c, repo, ["by-digest"])
    set_rules(c, name, [{"kind": "pulled_within", "days": 1}])
    dry, _ = dry_then_real(c, name)
    assert removed(dry) == {repo: {"unpulled"}}


def test_always_with_patterns_and_untagged_drop(c: httpx.Client) -> None:
    name = project()
    repo = f"{name}/app"
    for tag in ("release-1", "release-2-rc", "dev"):
        push(c, repo, tag)
    untagged = push(c, repo, "tmp")
    assert c.delete(f"/v2/{repo}/manifests/tmp").status_code == 202  # now untagged
    set_rules(
        c,
        name,
        [
            {
                "kind": "always",
                "tags": ["release-*"],
                "exclude_tags": ["re:.*-rc"],
                "untagged": "drop",
            }
        ],
    )
    dry, _ = dry_then_real(c, name)
    assert removed(dry) == {repo: {"release-2-rc", "dev"}}
    assert untagged in dry["candidates"][0]["manifests"]
    assert tags(c, repo) == ["release-1"]
    assert c.get(f"/v2/{repo}/manifests/{untagged}").status_code == 404


def push_referrer(c: httpx.Client, repo: str, subject: str, kind: str) -> str:
    layer = f"{kind} of {subject}".encode()
    push_blob(c, repo, OCI_EMPTY_BYTES)
    push_blob(c, repo, layer)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": f"application/vnd.test.{kind}",
            "config": {"mediaType": OCI_EMPTY, "digest": digest_of(OCI_EMPTY_BYTES), "size": 2},
            "layers": [
                {
                    "mediaType": "application/octet-stream",
                    "digest": digest_of(layer),
                    "size": len(layer),
                }
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        }
    ).encode()
    digest = digest_of(body)
    r = c.put(
        f"/v2/{repo}/manifests/{digest}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201, r.text
    return digest


OCI_EMPTY_BYTES = b"{}"


def push_index(c: httpx.Client, repo: str, tag: str) -> tuple[str, list[str]]:
    children = [push(c, repo, f"tmp-{arch}") for arch in ("amd64", "arm64")]
    for arch in ("amd64", "arm64"):
        assert c.delete(f"/v2/{repo}/manifests/tmp-{arch}").status_code == 202
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": d,
                "size": 1,
                "platform": {"os": "linux", "architecture": a},
            }
            for d, a in zip(children, ("amd64", "arm64"), strict=True)
        ],
    }
    body = json.dumps(index).encode()
    r = c.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201, r.text
    return digest_of(body), children


def test_referrers_go_with_their_subject_and_index_children_stay(
    c: httpx.Client, clock: ServerClock
) -> None:
    name = project()
    repo = f"{name}/app"
    old = push(c, repo, "old")
    signature = push_referrer(c, repo, old, "signature")
    sbom = push_referrer(c, repo, old, "sbom")
    old_index, old_children = push_index(c, repo, "old-multi")
    clock.advance(2 * DAY)
    new = push(c, repo, "new")
    new_signature = push_referrer(c, repo, new, "signature")
    index, children = push_index(c, repo, "multi")
    set_rules(c, name, [{"kind": "pushed_within", "days": 1, "untagged": "drop"}])
    dry, _ = dry_then_real(c, name)
    going = dry["candidates"][0]["manifests"]
    assert set(going) == {old, signature, sbom, old_index, *old_children}
    assert going.index(signature) < going.index(old) and going.index(sbom) < going.index(old)
    assert all(going.index(old_index) < going.index(child) for child in old_children)
    for digest in going:
        assert c.get(f"/v2/{repo}/manifests/{digest}").status_code == 404
    for digest in (new, new_signature, index, *children):  # a kept index keeps its children
        assert c.get(f"/v2/{repo}/manifests/{digest}").status_code == 200
    referrers = c.get(f"/v2/{repo}/referrers/{new}").json()["manifests"]
    assert [m["digest"] for m in referrers] == [new_signature]
    assert tags(c, repo) == ["multi", "new"]


def test_projects_without_rules_and_unknown_projects(c: httpx.Client) -> None:
    name = project()
    push(c, f"{name}/app", "v1")
    found = run(c, name, False)
    assert found["summary"]["tags_removed"] == 0 and found["candidates"] == []
    assert tags(c, f"{name}/app") == ["v1"]
    r = c.post("/api/projects/nosuchproject/retention/runs", json={})
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    r = c.get("/api/retention/pulls", params={"repository": "nosuch/repo"})
    assert r.status_code == 404


def test_bad_rules_are_refused_with_every_problem(c: httpx.Client) -> None:
    name = project()
    push(c, f"{name}/app", "v1")
    set_rules(c, name, [{"kind": "always"}])
    before = c.get(f"/api/projects/{name}/retention").json()
    r = c.put(
        f"/api/projects/{name}/retention",
        json={
            "rules": [
                {"kind": "latest_pushed"},
                {"kind": "pulled_within", "days": -1, "untagged": "x", "tags": "v*"},
            ],
            "schedule": "every day",
            "gc": "yes",
            "extra": 1,
        },
    )
    assert r.status_code == 400, r.text
    error = r.json()["errors"][0]
    assert error["code"] == "RETENTION_RULE_INVALID"
    detail = error["detail"]
    assert set(detail) == {"rules", "schedule", "gc", "extra"}
    assert set(detail["rules"]) == {"0", "1"}
    assert set(detail["rules"]["0"]) == {"count"}
    assert set(detail["rules"]["1"]) == {"days", "untagged", "tags"}
    for body in (b"not json", b"[1]"):
        r = c.put(f"/api/projects/{name}/retention", content=body)
        assert r.status_code == 400
    r = c.post(f"/api/projects/{name}/retention/runs", json={"dry_run": "yes", "now": 1})
    assert r.status_code == 400 and set(r.json()["errors"][0]["detail"]) == {"dry_run", "now"}
    assert c.get(f"/api/projects/{name}/retention/runs/abc").status_code == 400
    assert c.get(f"/api/projects/{name}/retention/runs/99999").status_code == 404
    assert c.delete(f"/api/projects/{name}/retention/rules/99999").status_code == 404
    assert c.get(f"/api/projects/{name}/retention").json() == before


def test_single_rules_and_the_schedule(c: httpx.Client) -> None:
    name = project()
    push(c, f"{name}/app", "v1")
    set_rules(c, name, [], schedule="0  3 * * *", gc=True)
    r = c.post(f"/api/projects/{name}/retention/rules", json={"kind": "latest_pushed", "count": 3})
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["count"] == 3 and rule["id"]
    shown = c.get(f"/api/projects/{name}/retention").json()
    assert shown["schedule"] == "0 3 * * *" and shown["gc"] is True
    assert [x["id"] for x in shown["rules"]] == [rule["id"]]
    assert c.delete(f"/api/projects/{name}/retention/rules/{rule['id']}").status_code == 200
    assert c.get(f"/api/projects/{name}/retention").json()["rules"] == []


def test_cli_dry_run_and_show(c: httpx.Client, server: WharfServer, clock: ServerClock) -> None:
    name = project()
    repo = f"{name}/app"
    push(c, repo, "v1")
    clock.advance(60)
    push(c, repo, "v2")
    set_rules(c, name, [{"kind": "latest_pushed", "count": 1}])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry.cli",
            "retention",
            "run",
            name,
            "--dry-run",
            "--json",
            "-c",
            str(server.config_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=clock_env(clock),
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["dry_run"] and removed(found) == {repo: {"v1"}}
    assert tags(c, repo) == ["v1", "v2"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry.cli",
            "retention",
            "show",
            name,
            "--json",
            "-c",
            str(server.config_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["rules"][0]["kind"] == "latest_pushed"
    assert shown["runs"][0]["id"] == found["id"] and shown["runs"][0]["trigger"] == "cli"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry.cli",
            "retention",
            "run",
            "nosuch",
            "-c",
            str(server.config_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 1 and "nosuch" in out.stderr


def clock_env(clock: ServerClock) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(clock.env())
    return env


# -- retention then GC, SQLite and PostgreSQL --------------------------------


def retention_then_gc(server: WharfServer, clock: ServerClock) -> None:
    with server.client() as c:
        name = project()
        repo, other = f"{name}/app", f"{name}/keep"
        shared = b"a layer both repositories hold " * 100
        push_blob(c, repo, shared)
        sig = push_referrer(c, repo, push(c, repo, "old-signed"), "signature")
        clock.advance(3600)
        for tag in ("v1", "v2", "v3"):
            config = json.dumps({"tag": tag, "repo": repo}).encode()
            push_image(c, repo, tag, [shared, f"{tag} only ".encode() * 500], config=config)
            clock.advance(3600)
        push_image(c, other, "v1", [shared])
        clock.advance(3 * 3600)
        set_rules(c, name, [{"repositories": ["app"], "kind": "latest_pushed", "count": 1}])
        dry = run(c, name, True)
        assert removed(dry) == {repo: {"v1", "v2", "old-signed"}}
        assert sig in dry["candidates"][0]["manifests"]
        predicted = dry["summary"]["bytes_predicted"]
        before = stored_files(server.root)
        real = run(c, name, False, gc=True)
        assert real["candidates"] == dry["candidates"]
        gc_run = real["summary"]["gc_run"]
        for _ in range(300):
            found = c.get(f"/api/gc/runs/{gc_run}").json()
            if found.get("state") in ("done", "failed"):
                break
            time.sleep(0.1)
        assert found["state"] == "done", found
        after = stored_files(server.root)
        assert predicted > 0
        assert sum(before.values()) - sum(after.values()) == predicted
        assert tags(c, repo) == ["v3"] and tags(c, other) == ["v1"]
        assert c.get(f"/v2/{other}/blobs/{digest_of(shared)}").status_code == 200


def test_retention_then_gc_reclaims_what_the_dry_run_predicted(tmp_path: Path) -> None:
    clock = ServerClock(tmp_path / "clock")
    server = WharfServer(tmp_path / "wharf", OPEN_CONFIG, clock=clock).start()
    try:
        retention_then_gc(server, clock)
    finally:
        server.stop()


def test_retention_then_gc_on_postgresql(tmp_path: Path, postgres: PostgresCluster) -> None:
    clock = ServerClock(tmp_path / "clock")
    config = {**OPEN_CONFIG, "database": {"url": postgres.create_database(), "poolsize": 4}}
    server = WharfServer(tmp_path / "wharf", config, clock=clock).start()
    try:
        retention_then_gc(server, clock)
    finally:
        server.stop()


# -- the roles -----------------------------------------------------------------


def test_members_read_maintainers_change_and_run(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "server", basic_config(tmp_path)).start()
    try:
        make_team(server)
        rules = {"rules": [{"kind": "always"}]}
        for user, status in (("gina", 403), ("dave", 403), (None, 401), ("eve", 403)):
            with as_user(server, user) as c:
                assert c.put("/api/projects/team/retention", json=rules).status_code == status
                assert c.post("/api/projects/team/retention/runs", json={}).status_code == status
        for user in ("gina", "dave"):
            with as_user(server, user) as c:
                assert c.get("/api/projects/team/retention").status_code == 200
        with as_user(server, "eve") as c:
            assert c.get("/api/projects/team/retention").status_code == 403
            assert (
                c.get("/api/retention/pulls", params={"repository": "team/app"}).status_code == 403
            )
        for user in ("mary", "olga", "admin"):
            with as_user(server, user) as c:
                assert c.put("/api/projects/team/retention", json=rules).status_code == 200
        with as_user(server, "mary") as c:
            r = c.post("/api/projects/team/retention/runs", json={"dry_run": True})
            assert r.status_code == 202, r.text
            assert (
                c.get("/api/retention/pulls", params={"repository": "team/app"}).status_code == 200
            )
    finally:
        server.stop()


# -- the keepers seam (immutable tags: part B supplies one) -------------------


def test_a_keeper_keeps_tags_the_rules_would_remove(
    c: httpx.Client, server: WharfServer, clock: ServerClock
) -> None:
    import asyncio
    from contextlib import AsyncExitStack

    from sqlalchemy import Connection

    from registry.app import build_services
    from registry.config import load_settings
    from registry.meta.trail import AdminChange
    from registry.retention.setup import build_retention

    name = project()
    repo = f"{name}/app"
    for tag in ("v1", "pinned-1", "v2", "v3"):
        push(c, repo, tag)
        clock.advance(60)
    set_rules(c, name, [{"kind": "latest_pushed", "count": 1}])
    asked: list[tuple[str, str, list[str]]] = []
    trail: list[AdminChange] = []

    def record(conn: Connection, change: AdminChange) -> None:
        trail.append(change)

    def pinned(conn: Connection, project: str, repository: str, names: list[str]) -> set[str]:
        asked.append((project, repository, sorted(names)))
        return {n for n in names if n.startswith("pinned-")}

    async def main() -> dict[str, Any]:
        settings = load_settings(str(server.config_path))
        async with AsyncExitStack() as stack:
            services = await build_services(settings, stack)
            retention = build_retention(services, keepers=[pinned], trail=record)
            plan = await retention.plan(name)
            assert plan.candidates() == [
                {
                    "repository": repo,
                    "tags": ["v1", "v2"],
                    "manifests": plan.candidates()[0]["manifests"],
                }
            ]
            run_id = await retention.start(name, False, False, "test", background=False)
            return await retention.run(name, run_id)

    found = asyncio.run(main())
    assert found["status"] == "done" and removed(found) == {repo: {"v1", "v2"}}
    assert asked == [(name, repo, ["pinned-1", "v1", "v2", "v3"])] * 2  # plan, then the run
    assert tags(c, repo) == ["pinned-1", "v3"]
    # the run's start and end handed to the trail (the audit log)
    assert [(t.action, t.project) for t in trail] == [
        ("retention.run.start", name),
        ("retention.run.finish", name),
    ]
    assert trail[1].details["tags_removed"] == 2 and trail[1].outcome == "success"


def test_a_scheduled_run_starts_at_its_cron_time(c: httpx.Client, clock: ServerClock) -> None:
    name = project()
    repo = f"{name}/app"
    push(c, repo, "v1")
    clock.advance(60)
    push(c, repo, "v2")
    set_rules(c, name, [{"kind": "latest_pushed", "count": 1}], schedule="*/5 * * * *")
    time.sleep(2)
    assert c.get(f"/api/projects/{name}/retention/runs").json()["runs"] == []  # not yet due
    clock.advance(600)  # past the next cron time
    for _ in range(450):  # each worker looks every 24 to 30 s
        runs = c.get(f"/api/projects/{name}/retention/runs").json()["runs"]
        if runs and runs[0]["status"] != "running":
            break
        time.sleep(0.1)
    assert [(r["trigger"], r["dry_run"], r["status"]) for r in runs] == [
        ("schedule", False, "done")
    ]
    assert tags(c, repo) == ["v2"]
    # a PUT keeping the schedule keeps its place: no run until the next cron time
    set_rules(c, name, [{"kind": "latest_pushed", "count": 1}], schedule="*/5 * * * *")
    assert len(c.get(f"/api/projects/{name}/retention/runs").json()["runs"]) == 1
