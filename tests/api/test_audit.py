"""The audit log (issue #16) against a real ``wharf serve``: every push, tag move,
delete, login (success and failure), token grant, pull and administrative change has a
record, checked field by field (actor, client address, user agent, project, repository,
reference, digest, action, outcome); filters, cursor pages and the JSONL and CSV export;
who sees what (administrators all, a project's owners their project's); the retention
purge with the server's clock moved; and a SIGKILL during pushes leaves every pushed
manifest with its record and no record without its manifest."""

from __future__ import annotations

import contextlib
import csv
import getpass
import io
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clock import ServerClock
from tests.support.oci import push_image, unique_name
from tests.support.postgres import PostgresCluster
from tests.support.projects import USERS, bearer, make_team, start_basic, start_token
from tests.support.quotas import wharf_cli
from tests.support.server import WharfServer, _merge

pytestmark = pytest.mark.e2e
UA = "audit-test/1.0 (field check)"
FIELDS = {
    "id",
    "time",
    "epoch",
    "actor",
    "addr",
    "useragent",
    "request_id",
    "action",
    "outcome",
    "project",
    "repository",
    "reference",
    "digest",
    "details",
}


def client(server: WharfServer, user: str | None, password: str | None = None) -> httpx.Client:
    auth = (user, password or USERS[user]) if user else None
    return server.client(auth=auth, headers={"User-Agent": UA})


def records(server: WharfServer, viewer: str = "admin", **params: Any) -> list[dict[str, Any]]:
    """The records ``viewer`` sees with filters ``params`` (``user=``: the actor)."""
    with client(server, viewer) as c:
        r = c.get("/api/audit", params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["records"]
        return found


def wait_for(
    server: WharfServer, check: Callable[[list[dict[str, Any]]], bool], **params: Any
) -> list[dict[str, Any]]:
    """The records of ``params`` once ``check`` holds for them (batched records are
    written every 0.5 s)."""
    deadline = time.monotonic() + 15
    while True:
        found = records(server, **params)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def one(found: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    matching = [r for r in found if all(r[k] == v for k, v in fields.items())]
    assert len(matching) == 1, (fields, found)
    return matching[0]


def assert_request(record: dict[str, Any], actor: str | None) -> None:
    """The who and from where of a record made by a request of :func:`client`."""
    assert set(record) == FIELDS
    assert record["actor"] == actor
    assert record["addr"] == "127.0.0.1"
    assert record["useragent"] == UA
    assert record["request_id"]
    assert abs(record["epoch"] - time.time()) < 120
    assert record["time"].endswith("Z") and record["time"][:4] == time.strftime("%Y")


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    """Basic auth, project team (olga owner, mary maintainer, dave developer, gina guest)
    and pub, an image in each (make_team)."""
    server = start_basic(tmp_path_factory.mktemp("audit-basic"))
    yield server
    server.stop()


def test_push_tag_move_deletes_and_pull_are_recorded_field_by_field(
    basic: WharfServer,
) -> None:
    repo = "team/" + unique_name("a").replace("/", "-")
    with client(basic, "dave") as dave:
        first, _ = push_image(dave, repo, "v1", [b"layer one"])
        second, _ = push_image(dave, repo, "v1", [b"layer two"])  # moves v1
        again, _ = push_image(dave, repo, "v1", [b"layer two"])  # the same: no move
        assert again == second
        assert dave.get(f"/v2/{repo}/manifests/v1").status_code == 200
        assert dave.head(f"/v2/{repo}/manifests/v1").status_code == 200  # not a pull
    with client(basic, "mary") as mary:  # developers may not delete; maintainers may
        assert mary.delete(f"/v2/{repo}/manifests/v1").status_code == 202  # the tag
        assert mary.delete(f"/v2/{repo}/manifests/{first}").status_code == 202
    found = wait_for(
        basic, lambda rs: any(r["action"] == "manifest.pull" for r in rs), repository=repo
    )
    actions = [r["action"] for r in reversed(found)]  # oldest first
    assert actions == [
        "manifest.push",
        "tag.move",
        "manifest.push",
        "manifest.pull",
        "tag.delete",
        "manifest.delete",
    ], actions
    pushed = one(found, action="manifest.push", digest=first)
    assert_request(pushed, "dave")
    assert pushed["outcome"] == "success"
    assert pushed["project"] == "team"
    assert pushed["repository"] == repo
    assert pushed["reference"] == "v1"
    assert pushed["details"]["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    assert pushed["details"]["size"] > 0
    moved = one(found, action="tag.move")
    assert_request(moved, "dave")
    assert (moved["reference"], moved["digest"]) == ("v1", second)
    assert moved["details"]["previous"] == first
    pulled = one(found, action="manifest.pull")
    assert_request(pulled, "dave")
    assert (pulled["project"], pulled["reference"], pulled["digest"]) == ("team", "v1", second)
    assert pulled["details"] == {"count": 1}
    untagged = one(found, action="tag.delete")
    assert_request(untagged, "mary")
    assert (untagged["reference"], untagged["digest"]) == ("v1", second)
    deleted = one(found, action="manifest.delete")
    assert_request(deleted, "mary")
    assert (deleted["digest"], deleted["reference"]) == (first, None)
    assert deleted["details"]["untagged"] == []


def test_identical_pulls_are_counted_into_one_record_per_batch(basic: WharfServer) -> None:
    with client(basic, "gina") as gina:  # a guest pulls
        for _ in range(20):
            assert gina.get("/v2/team/app/manifests/v1").status_code == 200
    found = wait_for(
        basic,
        lambda rs: sum(r["details"]["count"] for r in rs) >= 20,
        action="manifest.pull",
        user="gina",
    )
    assert sum(r["details"]["count"] for r in found) == 20
    assert len(found) < 20  # the 20 pulls of a few milliseconds share their batches
    for r in found:
        assert_request(r, "gina")
        assert (r["project"], r["repository"], r["reference"]) == ("team", "team/app", "v1")


def test_logins_succeeded_and_failed_are_recorded(basic: WharfServer) -> None:
    with client(basic, "eve", "not-her-password") as c:
        assert c.get("/v2/").status_code == 401
    with client(basic, "eve") as c:
        assert c.get("/v2/").status_code == 200
        assert c.get("/v2/").status_code == 200  # the cached password: no new login
    found = wait_for(basic, lambda rs: len(rs) >= 2, action="login", user="eve")
    assert [(r["outcome"], r["details"]) for r in reversed(found)] == [
        ("failure", {"source": "htpasswd"}),
        ("success", {"source": "htpasswd"}),
    ]
    for r in found:
        assert_request(r, "eve")
        assert (r["project"], r["repository"], r["digest"]) == (None, None, None)
    failed = records(basic, action="login", outcome="failure", user="eve")
    assert [r["id"] for r in failed] == [found[-1]["id"]]


def test_admin_changes_are_recorded(basic: WharfServer) -> None:
    name = "adm" + unique_name("p").replace("/", "")[:10]
    with client(basic, "admin") as admin:
        r = admin.post("/api/projects", json={"name": name, "description": "audited"})
        assert r.status_code == 201, r.text
        r = admin.put(f"/api/projects/{name}/members/user/olga", json={"role": "owner"})
        assert r.status_code == 201, r.text
        r = admin.put(f"/api/projects/{name}/quota", json={"bytes": 12345})
        assert r.status_code == 200, r.text
        r = admin.post(
            f"/api/projects/{name}/robots",
            json={"name": "builder", "permissions": [{"repositories": ["*"], "actions": ["pull"]}]},
        )
        assert r.status_code == 201, r.text
        robot = r.json()["name"]
        r = admin.patch(f"/api/projects/{name}", json={"public": True})
        assert r.status_code == 200, r.text
        r = admin.delete(f"/api/projects/{name}/members/user/olga")
        assert r.status_code in (200, 204), r.text
        # refused changes write nothing
        assert admin.put(f"/api/projects/{name}/quota", json={"bytes": -1}).status_code == 400
    found = records(basic, project=name)
    assert [r["action"] for r in reversed(found)] == [
        "project.create",
        "member.add",
        "quota.set",
        "robot.create",
        "project.update",
        "member.remove",
    ]
    for r in found:
        assert_request(r, "admin")
        assert (r["outcome"], r["project"]) == ("success", name)
    created = one(found, action="project.create")
    assert created["details"]["target"] == name
    assert created["details"]["description"] == "audited"
    member = one(found, action="member.add")
    assert member["details"] == {
        "target": "user:olga",
        "kind": "user",
        "name": "olga",
        "role": "owner",
    }
    assert one(found, action="quota.set")["details"] == {"target": name, "bytes": 12345}
    made = one(found, action="robot.create")
    assert made["details"]["target"] == robot
    assert "secret" not in json.dumps(made["details"])
    assert one(found, action="project.update")["details"] == {"target": name, "public": True}


def test_owners_see_their_projects_records_and_others_are_refused(basic: WharfServer) -> None:
    with client(basic, "admin") as admin:  # a record in another project
        push_image(admin, "pub/seen-by-admins", "v1", [b"pub layer"])
    everything = records(basic)
    assert {"team", "pub"} <= {r["project"] for r in everything}
    assert any(r["project"] is None for r in everything)  # logins
    owned = records(basic, "olga")
    assert owned and {r["project"] for r in owned} == {"team"}
    assert {r["id"] for r in owned} == {r["id"] for r in everything if r["project"] == "team"}
    assert records(basic, "olga", project="team") == owned
    with client(basic, "olga") as olga:
        r = olga.get("/api/audit", params={"project": "pub"})
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        assert olga.get("/api/audit/export", params={"project": "pub"}).status_code == 403
    for user in ("mary", "dave", "gina", "eve"):
        with client(basic, user) as c:
            r = c.get("/api/audit")
            assert r.status_code == 403, (user, r.text)
            assert r.json()["errors"][0]["code"] == "DENIED"
    with basic.client() as anonymous:
        assert anonymous.get("/api/audit").status_code == 401


def test_filters_cursor_pages_and_exports(basic: WharfServer) -> None:
    repo = "team/" + unique_name("f").replace("/", "-")
    with client(basic, "dave") as dave:
        for i in range(5):
            push_image(dave, repo, f"t{i}", [f"layer {i}".encode()])
    every = records(basic, repository=repo)
    assert len(every) == 5 and all(r["action"] == "manifest.push" for r in every)
    assert [r["reference"] for r in every] == ["t4", "t3", "t2", "t1", "t0"]  # newest first
    # cursor pages of 2: all five, each once, in order
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    with client(basic, "admin") as admin:
        for _ in range(5):
            params: dict[str, Any] = {"repository": repo, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = admin.get("/api/audit", params=params).json()
            seen += page["records"]
            cursor = page["next"]
            if cursor is None:
                break
        assert [r["id"] for r in seen] == [r["id"] for r in every]
        # the filters
        assert records(basic, repository=repo, user="dave") == every
        assert records(basic, repository=repo, user="mary") == []
        assert records(basic, repository=repo, action="manifest.*") == every
        assert records(basic, repository=repo, action="tag.move") == []
        assert records(basic, repository=repo, outcome="failure") == []
        middle = every[2]
        newer = records(basic, repository=repo, since=middle["time"])
        assert [r["id"] for r in newer] == [r["id"] for r in every[:3]]
        older = records(basic, repository=repo, until=str(middle["epoch"]))
        assert [r["id"] for r in older] == [r["id"] for r in every[3:]]
        # the export: JSON Lines and CSV, the same records
        r = admin.get("/api/audit/export", params={"repository": repo})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/jsonl")
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert lines == every
        r = admin.get("/api/audit/export", params={"repository": repo, "format": "csv"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [int(row["id"]) for row in rows] == [r["id"] for r in every]
        for row, record in zip(rows, every, strict=True):
            assert row["actor"] == "dave" and row["digest"] == record["digest"]
            assert row["time"] == record["time"] and row["useragent"] == UA
            assert json.loads(row["details"]) == record["details"]
        # bad input: 400 naming every bad parameter
        r = admin.get(
            "/api/audit",
            params={
                "limit": "0",
                "cursor": "x",
                "since": "yesterday",
                "outcome": "maybe",
                "action": "DROP TABLE",
                "colour": "red",
            },
        )
        assert r.status_code == 400, r.text
        error = r.json()["errors"][0]
        assert error["code"] == "AUDIT_QUERY_INVALID"
        assert set(error["detail"]) == {"limit", "cursor", "since", "outcome", "action", "colour"}
        r = admin.get("/api/audit", params={"since": "2026-12-04T10:00:00Z", "until": "1"})
        assert r.status_code == 400 and set(r.json()["errors"][0]["detail"]) == {"until"}
        r = admin.get("/api/audit/export", params={"format": "xml"})
        assert r.status_code == 400 and set(r.json()["errors"][0]["detail"]) == {"format"}
        assert admin.post("/api/audit").status_code == 405


def test_wharf_audit_export_prints_the_records(basic: WharfServer) -> None:
    every = records(basic, action="project.*")
    assert every
    out = wharf_cli(basic, "audit", "export", "--action", "project.*")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == every
    out = wharf_cli(basic, "audit", "export", "--format", "csv", "--user", "admin")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert rows and {row["actor"] for row in rows} == {"admin"}
    out = wharf_cli(basic, "audit", "export", "--since", "soon")
    assert out.returncode == 2 and "--since" in out.stderr


def test_changes_made_with_the_commands_are_recorded(basic: WharfServer) -> None:
    name = "cli" + unique_name("p").replace("/", "")[:10]
    out = wharf_cli(basic, "project", "create", name, "--description", "from the shell")
    assert out.returncode == 0, out.stderr
    out = wharf_cli(basic, "quota", "set", name, "1MiB")
    assert out.returncode == 0, out.stderr
    found = records(basic, project=name)
    assert [r["action"] for r in reversed(found)] == ["project.create", "quota.set"]
    for r in found:
        assert r["actor"] == f"cli:{getpass.getuser()}"
        assert (r["addr"], r["useragent"], r["request_id"]) == (None, None, None)
    assert one(found, action="quota.set")["details"] == {"target": name, "bytes": 1024**2}


def test_token_grants_are_recorded(tmp_path: Path) -> None:
    server = start_token(tmp_path)
    try:
        with server.client(auth=("dave", USERS["dave"]), headers={"User-Agent": UA}) as c:
            r = c.get(
                "/token",
                params={"service": "wharf-test", "scope": "repository:team/app:pull,push,delete"},
            )
            assert r.status_code == 200, r.text
        with server.client(auth=("dave", "wrong"), headers={"User-Agent": UA}) as c:
            assert c.get("/token", params={"service": "wharf-test"}).status_code == 401
        with bearer(server, "admin", "repository:team/app:pull") as admin:
            found = wait_for(
                server,
                lambda rs: any(r["actor"] == "dave" for r in rs),
                action="token.grant",
                repository="team/app",
            )
            assert admin.get("/v2/team/app/manifests/v1").status_code == 200
        grant = one(found, actor="dave")
        assert_request(grant, "dave")
        assert (grant["outcome"], grant["project"]) == ("success", "team")
        assert grant["details"] == {
            "asked": ["repository:team/app:delete,pull,push"],
            "granted": ["repository:team/app:pull,push"],  # a developer may not delete
        }
        logins = wait_for(
            server, lambda rs: len(rs) >= 1, action="login", user="dave", outcome="failure"
        )
        assert len(logins) == 1 and logins[0]["useragent"] == UA
        pulls = wait_for(server, lambda rs: len(rs) >= 1, action="manifest.pull", user="admin")
        assert pulls[0]["repository"] == "team/app" and pulls[0]["reference"] == "v1"
    finally:
        server.stop()


def test_records_older_than_the_retention_are_purged(tmp_path: Path) -> None:
    clock = ServerClock(tmp_path / "clock")
    config = {"audit": {"retention": "1h", "purgeinterval": "1s"}}
    server = WharfServer(tmp_path / "server", config, clock=clock).start()
    try:
        with server.client() as c:
            old, _ = push_image(c, "lib/old", "v1", [b"old layer"])
            assert [r["digest"] for r in records(server, repository="lib/old")] == [old]
            clock.advance(30 * 60)  # half the retention: kept
            time.sleep(2.5)
            assert len(records(server, repository="lib/old")) == 1
            clock.advance(45 * 60)  # now 75 minutes old
            new, _ = push_image(c, "lib/new", "v1", [b"new layer"])
            deadline = time.monotonic() + 15
            while records(server, repository="lib/old") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert records(server, repository="lib/old") == []
            assert [r["digest"] for r in records(server, repository="lib/new")] == [new]
    finally:
        server.stop()


def _pushes(server: WharfServer, stop: threading.Event, done: list[str]) -> None:
    with server.client() as c:
        i = 0
        while not stop.is_set():
            with contextlib.suppress(Exception):  # the server dies under it
                digest, _ = push_image(c, f"crash/r{i % 3}", f"t{i}", [f"crash {i}".encode()])
                done.append(digest)
            i += 1


def test_sigkill_during_pushes_leaves_each_push_with_its_record(tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "server", {"http": {"workers": 2}}).start()
    stop, done = threading.Event(), []
    pusher = threading.Thread(target=_pushes, args=(server, stop, done))
    pusher.start()
    try:
        deadline = time.monotonic() + 60
        while len(done) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop(signal.SIGKILL)  # in the middle of pushes
        stop.set()
        pusher.join(30)
        server.start()
        db = sqlite3.connect(server.root / "wharf.db")
        try:
            manifests = set(
                db.execute(
                    "SELECT r.name, m.digest FROM manifests m "
                    "JOIN repositories r ON r.id = m.repository_id WHERE r.name LIKE 'crash/%'"
                )
            )
            recorded = set(
                db.execute(
                    "SELECT repository, digest FROM audit_records "
                    "WHERE action IN ('manifest.push', 'tag.move') AND repository LIKE 'crash/%'"
                )
            )
        finally:
            db.close()
        assert len(done) >= 15
        assert {d for _, d in manifests} >= set(done)  # every acknowledged push is there
        assert manifests == recorded
        with server.client() as c:  # and the server goes on recording
            digest, _ = push_image(c, "crash/after", "v1", [b"after the crash"])
        assert [r["digest"] for r in records(server, repository="crash/after")] == [digest]
    finally:
        stop.set()
        pusher.join(30)
        server.stop()


def test_postgres_records_in_the_transaction_and_pages(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    server = WharfServer(tmp_path / "server")
    _merge(server.config, {"database": {"url": postgres.create_database()}})
    server = start_basic_on(server, tmp_path)
    try:
        repo = "team/pg"
        with client(server, "dave") as dave:
            first, _ = push_image(dave, repo, "v1", [b"pg one"])
            second, _ = push_image(dave, repo, "v1", [b"pg two"])
            assert dave.get(f"/v2/{repo}/manifests/v1").status_code == 200
        found = wait_for(
            server, lambda rs: any(r["action"] == "manifest.pull" for r in rs), repository=repo
        )
        assert [r["action"] for r in reversed(found)] == [
            "manifest.push",
            "tag.move",
            "manifest.pull",
        ]
        assert one(found, action="tag.move")["details"]["previous"] == first
        for r in found:
            assert_request(r, "dave")
        with client(server, "admin") as admin:
            page = admin.get("/api/audit", params={"repository": repo, "limit": 2}).json()
            rest = admin.get(
                "/api/audit", params={"repository": repo, "limit": 2, "cursor": page["next"]}
            ).json()
        assert [r["id"] for r in page["records"] + rest["records"]] == [r["id"] for r in found]
        assert rest["records"][0]["digest"] == first and second in {r["digest"] for r in found}
        assert records(server, "olga") and {r["project"] for r in records(server, "olga")} == {
            "team"
        }
    finally:
        server.stop()


def start_basic_on(server: WharfServer, workdir: Path) -> WharfServer:
    """:func:`start_basic`'s configuration on a server made already (its database)."""
    from tests.support.projects import basic_config

    _merge(server.config, basic_config(workdir))
    server.auth = True
    server.start()
    make_team(server)
    return server
