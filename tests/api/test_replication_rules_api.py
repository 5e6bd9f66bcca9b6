"""Replication rules added, changed and deleted through ``/api/replication/rules``
(issue #6), on SQLite and PostgreSQL.

Site A (two workers, htpasswd auth, one rule in its config file) gets rules through the
API that copy to site B (open). Every check reads what a user would: the API's answers
and the content at B over the distribution API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import text

from registry.meta import migrate
from registry.meta.db import Database, make_engine
from registry.meta.migrate import ensure_schema, upgrade
from replicator.store import ReplicationStore
from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.postgres import PostgresCluster
from tests.support.replication import (
    assert_complete,
    push_layers,
    random_bytes,
    replicate,
    tag_digests,
    wait_for,
)
from tests.support.server import WharfServer

STARTUP = 120
SECRET = "remote-s3cret-pw"


class Sites:
    def __init__(self, a: WharfServer, b: WharfServer, db: str, url: str) -> None:
        self.a, self.b, self.db, self.database_url = a, b, db, url

    def admin(self) -> httpx.Client:
        return self.a.client(auth=("admin", PASSWORDS["admin"]))

    def rule(self, name: str, **extra: Any) -> dict[str, Any]:
        remote = {"url": self.b.url, "username": "sync", "password": SECRET}
        return {"name": f"{name}-{self.db}", "remote": remote, **extra}

    def stored(self, name: str) -> str | None:
        """The rule's row as stored in site A's database (JSON), read directly."""

        async def read() -> str | None:
            db = Database(self.database_url, 1)
            try:
                return await ReplicationStore(db).rule(name)
            finally:
                await db.close()

        return asyncio.run(read())


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    server = WharfServer(tmp_path_factory.mktemp("rules-b"), {"http": {"workers": 1}})
    server.start(STARTUP)
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sites(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    site_b: WharfServer,
) -> Iterator[Sites]:
    workdir = tmp_path_factory.mktemp(f"rules-a-{request.param}")
    a = WharfServer(workdir / "server", {"http": {"workers": 2}, **htpasswd_config(workdir)})
    url = f"sqlite+aiosqlite:///{(a.root / 'wharf.db').resolve()}"
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
        a.config["database"] = {"url": url}
    static = {"name": "static", "remote": {"url": site_b.url}, "repositories": ["static/*"]}
    a.config["replication"] = {
        "local": {"url": a.url, "username": "admin", "password": PASSWORDS["admin"]},
        "rules": [static],
    }
    a.start(STARTUP)
    try:
        yield Sites(a, site_b, request.param, url)
    finally:
        a.stop()


def _error(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


def _rules(c: httpx.Client) -> dict[str, dict[str, Any]]:
    r = c.get("/api/replication/rules")
    assert r.status_code == 200, r.text
    return {x["name"]: x for x in r.json()["rules"]}


def _runs(c: httpx.Client, rule: str) -> list[dict[str, Any]]:
    r = c.get("/api/replication/runs", params={"rule": rule})
    assert r.status_code == 200, r.text
    runs: list[dict[str, Any]] = r.json()["runs"]
    return runs


def _has(b: httpx.Client, repo: str, tag: str, digest: str) -> Callable[[], bool]:
    return lambda: tag_digests(b, repo).get(tag) == digest


def test_rule_added_through_api_runs_and_copies(sites: Sites) -> None:
    repo, other = f"api-{sites.db}/app", f"api-{sites.db}/other"
    with sites.admin() as a, sites.b.client() as b:
        digest = push_layers(a, repo, "v1", [random_bytes(repo, 64 * 1024)])
        push_layers(a, other, "v1", [b"not selected"])
        body = sites.rule("to-b", repositories=[repo], prefix="copy")
        name = body["name"]
        r = a.post("/api/replication/rules", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "api" and r.json()["prefix"] == "copy"
        assert SECRET not in r.text
        # listed with the config's rule; never with the password
        listed = a.get("/api/replication/rules")
        assert SECRET not in listed.text
        rules = _rules(a)
        assert rules[name]["source"] == "api" and rules["static"]["source"] == "config"
        assert rules[name]["remote"] == {
            "url": sites.b.url,
            "username": "sync",
            "insecure": False,
            "cacert": "",
        }
        one = a.get(f"/api/replication/rules/{name}")
        assert one.status_code == 200 and SECRET not in one.text
        assert one.json()["repositories"] == [repo] and one.json()["last_run"] is None
        # stored with the password (the replicator needs it), shown nowhere
        stored = sites.stored(name)
        assert stored is not None and SECRET in stored
        # run it now: some worker of A copies the image to B
        since = time.time()
        r = a.post(f"/api/replication/rules/{name}/run")
        assert r.status_code == 202, r.text
        wait_for(lambda: tag_digests(b, f"copy/{repo}").get("v1") == digest, 30, "the copy at B")
        assert_complete(b, f"copy/{repo}", "v1")
        assert tag_digests(b, f"copy/{other}") == {}
        run = wait_for(
            lambda: next(
                (x for x in _runs(a, name) if x["started_at"] >= since and x["finished_at"]),
                None,
            ),
            15,
            "the finished run",
        )
        assert run["status"] == "ok" and run["trigger"] == "manual" and run["tags_copied"] == 1
        assert _rules(a)[name]["last_success"]["id"] == run["id"]
    # `wharf replicate` finds the rule in the database too: nothing new to copy
    result = replicate(sites.a.config_path, name)
    assert result.returncode == 0, result.stderr
    assert "tags 0 copied, 1 in step" in result.stderr, result.stderr
    unknown = replicate(sites.a.config_path, "no-such-rule")
    assert unknown.returncode == 2 and name in unknown.stderr and "static" in unknown.stderr


def test_on_push_rule_added_through_api(sites: Sites) -> None:
    """A rule added on one worker applies to a push handled by any worker at once."""
    repo = f"live-{sites.db}/web"
    with sites.admin() as a, sites.b.client() as b:
        body = sites.rule("live", repositories=[f"live-{sites.db}/*"], onpush=True)
        assert a.post("/api/replication/rules", json=body).status_code == 201
        for i in range(3):  # new connections: the pushes reach both workers
            with sites.admin() as fresh:
                tag = f"v{i}"
                digest = push_layers(fresh, repo, tag, [random_bytes(f"{repo}{i}", 32 * 1024)])
                wait_for(_has(b, repo, tag, digest), 10, f"{repo}:{tag} at B")
        assert_complete(b, repo, "v2")
        runs = _runs(a, body["name"])
        assert runs and all(r["trigger"] == "onpush" and r["status"] == "ok" for r in runs)


def test_update_and_delete_rule(sites: Sites) -> None:
    repo = f"upd-{sites.db}/app"
    with sites.admin() as a, sites.b.client() as b:
        body = sites.rule("upd", repositories=[f"upd-{sites.db}/*"], onpush=True)
        name = body["name"]
        assert a.post("/api/replication/rules", json=body).status_code == 201
        # GET, edit, PUT back: the status fields and the missing password are fine
        edited = a.get(f"/api/replication/rules/{name}").json()
        edited["prefix"] = "second"
        r = a.put(f"/api/replication/rules/{name}", json=edited)
        assert r.status_code == 200, r.text
        assert r.json()["prefix"] == "second" and SECRET not in r.text
        assert a.get(f"/api/replication/rules/{name}").json()["prefix"] == "second"
        stored = sites.stored(name)
        assert stored is not None and SECRET in stored  # the password was kept
        # the change is in force for the next push
        digest = push_layers(a, repo, "v1", [random_bytes(repo, 16 * 1024)])
        wait_for(
            lambda: tag_digests(b, f"second/{repo}").get("v1") == digest, 15, "copy, new prefix"
        )
        assert tag_digests(b, repo) == {}
        # a PUT without the name takes it from the path; an explicit password replaces
        body2 = {**sites.rule("x", repositories=[f"upd-{sites.db}/*"], onpush=True)}
        del body2["name"]
        body2["remote"]["password"] = "changed"
        assert a.put(f"/api/replication/rules/{name}", json=body2).status_code == 200
        stored = sites.stored(name)
        assert stored is not None and "changed" in stored and SECRET not in stored
        # delete: gone from the API, and pushes are no longer copied
        r = a.delete(f"/api/replication/rules/{name}")
        assert r.status_code == 204, r.text
        gone = a.get(f"/api/replication/rules/{name}")
        assert gone.status_code == 404 and _error(gone) == "RULE_UNKNOWN"
        assert name not in _rules(a)
        assert a.post(f"/api/replication/rules/{name}/run").status_code == 404
        assert a.delete(f"/api/replication/rules/{name}").status_code == 404
        assert a.put(f"/api/replication/rules/{name}", json=body2).status_code == 404
        assert sites.stored(name) is None
        runs = len(_runs(a, name))
        push_layers(a, repo, "v2", [b"after the delete"])
        time.sleep(4)  # an on-push copy takes ~1-2 s here
        assert "v2" not in tag_digests(b, repo) and "v2" not in tag_digests(b, f"second/{repo}")
        assert len(_runs(a, name)) == runs


BAD_BODIES: list[tuple[Any, str]] = [
    ("not json", "JSON"),
    ([1, 2], "JSON object"),
    ({"remote": {"url": "http://x"}}, "name"),
    ({"name": "n1"}, "remote"),
    ({"name": "n1", "remote": {"url": "http://x"}, "direction": "sideways"}, "direction"),
    ({"name": "n1", "remote": {"url": "http://x"}, "shedule": "* * * * *"}, "shedule"),
    ({"name": "n1", "remote": {"url": "http://x", "pasword": "p"}}, "remote.pasword"),
    ({"name": "n1", "remote": {"url": "http://x"}, "schedule": "every day"}, "schedule"),
    ({"name": "a/b", "remote": {"url": "http://x"}}, "name"),
    ({"name": "n1", "remote": {"url": "http://x"}, "maxparallel": 0}, "maxparallel"),
    ({"name": "n1", "remote": {"url": "http://x"}, "bandwidth": "fast"}, "bandwidth"),
    ({"name": "n1", "remote": {"url": "ftp://x"}}, "remote.url"),
    ({"name": "n1", "remote": {"url": "http://x"}, "tags": ["re:("]}, "tags"),
    ({"name": "n1", "remote": {"url": "http://x"}, "repositories": "a/*"}, "repositories"),
]


def test_bad_input_is_refused_and_changes_nothing(sites: Sites) -> None:
    with sites.admin() as a:
        keep = sites.rule("keep", repositories=["keep/*"])
        assert a.post("/api/replication/rules", json=keep).status_code == 201
        before = a.get("/api/replication/rules").json()
        for body, mentions in BAD_BODIES:
            raw = body if isinstance(body, str) else None
            r = a.post(
                "/api/replication/rules",
                content=raw,
                json=None if raw is not None else body,
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 400, (body, r.text)
            assert _error(r) == "RULE_INVALID", r.text
            assert mentions in r.json()["errors"][0]["message"], (body, r.text)
            # nor replace a rule (a PUT may leave the name out: the path gives it)
            if isinstance(body, dict) and "name" not in body:
                continue
            if isinstance(body, dict) and body["name"] == "n1":
                body = {**body, "name": keep["name"]}
            p = a.put(
                f"/api/replication/rules/{keep['name']}",
                content=raw,
                json=None if raw is not None else body,
                headers={"Content-Type": "application/json"},
            )
            assert p.status_code == 400, (body, p.text)
            assert _error(p) == "RULE_INVALID", p.text
        r = a.put(f"/api/replication/rules/{keep['name']}", json={**keep, "name": "other"})
        assert r.status_code == 400 and "path" in r.text
        # names taken: by a stored rule, by a config rule
        r = a.post("/api/replication/rules", json=keep)
        assert r.status_code == 409 and _error(r) == "RULE_EXISTS", r.text
        r = a.post("/api/replication/rules", json={**keep, "name": "static"})
        assert r.status_code == 409 and "config" in r.json()["errors"][0]["message"]
        # config rules are read-only
        for method in ("PUT", "DELETE"):
            r = a.request(method, "/api/replication/rules/static", json={**keep, "name": "static"})
            assert r.status_code == 409 and _error(r) == "RULE_READ_ONLY", r.text
            assert "config file" in r.json()["errors"][0]["message"]
        r = a.put("/api/replication/rules/nope", json={**keep, "name": "nope"})
        assert r.status_code == 404 and _error(r) == "RULE_UNKNOWN"
        assert a.patch("/api/replication/rules/static").status_code == 405
        after = a.get("/api/replication/rules").json()
        for rules in (before, after):
            for rule in rules["rules"]:
                rule.pop("lag_seconds")
        assert after == before
        assert sites.stored(keep["name"]) is not None
        for name in ("n1", "a/b", "other", "nope"):
            assert sites.stored(name) is None


def test_only_administrators_manage_rules(sites: Sites) -> None:
    body = sites.rule("denied", repositories=["denied/*"])
    with sites.a.client(auth=("alice", PASSWORDS["alice"])) as alice, sites.a.client() as anon:
        for client, status, code in ((alice, 403, "DENIED"), (anon, 401, "UNAUTHORIZED")):
            requests = [
                client.post("/api/replication/rules", json=body),
                client.get("/api/replication/rules"),
                client.get("/api/replication/rules/static"),
                client.put("/api/replication/rules/static", json=body),
                client.delete("/api/replication/rules/static"),
            ]
            for r in requests:
                assert r.status_code == status, (r.request.method, r.request.url, r.text)
                assert _error(r) == code
    with sites.admin() as a:
        assert body["name"] not in _rules(a) and "static" in _rules(a)
    assert sites.stored(body["name"]) is None


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_rules_table_migration(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Migration 0007 on an existing 0006 database, the rows, and its downgrade."""
    if dialect == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()

    async def tables() -> set[str]:
        engine = make_engine(url, poolsize=1)
        try:
            async with engine.connect() as conn:
                query = (
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    if dialect == "sqlite"
                    else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
                return {row[0] for row in await conn.execute(text(query))}
        finally:
            await engine.dispose()

    async def downgrade(revision: str) -> None:
        engine = make_engine(url, poolsize=1)
        try:
            async with engine.begin() as conn:

                def run(sync_conn: Any) -> None:
                    cfg = migrate._config()
                    cfg.attributes["connection"] = sync_conn
                    command.downgrade(cfg, revision)

                await conn.run_sync(run)
        finally:
            await engine.dispose()

    async def scenario() -> None:
        await upgrade(url, "0006")
        assert "replication_rules" not in await tables()
        await upgrade(url, "head")
        await ensure_schema(url)  # up to date now
        assert "replication_rules" in await tables()
        db = Database(url, 2)
        store = ReplicationStore(db)
        try:
            assert await store.create_rule("r1", '{"name": "r1"}', "admin")
            assert not await store.create_rule("r1", '{"name": "other"}', "admin")
            assert await store.rules() == {"r1": '{"name": "r1"}'}
            assert await store.replace_rule("r1", '{"name": "r1", "x": 1}', None)
            assert not await store.replace_rule("r2", "{}", None)
            assert await store.rule("r1") == '{"name": "r1", "x": 1}'
            await store.add_pending("r1", "a/b", "v1")
            await store.save_upload("r1", "a/b", "sha256:x", "http://t/up", 5)
            assert await store.delete_rule("r1")
            assert not await store.delete_rule("r1")
            assert await store.rules() == {}
            assert await store.pending("r1") == []  # its pending work went with it
            assert await store.upload("r1", "a/b", "sha256:x") is None
        finally:
            await db.close()
        await downgrade("0006")
        assert "replication_rules" not in await tables()
        assert "replication_runs" in await tables()
        await upgrade(url, "head")
        assert "replication_rules" in await tables()

    asyncio.run(scenario())
