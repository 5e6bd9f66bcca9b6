"""Caps on open upload sessions (``storage.maintenance.uploadlimits``), against real
servers: per caller (user, or client address when anonymous) and per repository, on
SQLite and PostgreSQL, with two workers sharing the database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.auth import write_htpasswd
from tests.support.oci import (
    assert_error,
    digest_of,
    push_blob,
    push_image,
    start_upload,
    unique_name,
    upload_ids,
)
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer

PER_REPOSITORY, PER_CALLER = 3, 2
LIMITS = {"uploadlimits": {"perrepository": PER_REPOSITORY, "percaller": PER_CALLER}}
# one pair of users per test, so that no test counts another's sessions
USERS = {u: f"{u}-pw" for u in ("ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal")}


class Capped:
    """A capped registry and a way to count its session rows."""

    def __init__(self, server: WharfServer, rows: Callable[[], int]) -> None:
        self.server = server
        self.rows = rows

    def client(self, user: str | None) -> httpx.Client:
        return self.server.client(auth=(user, USERS[user]) if user else None)

    def state(self) -> tuple[set[str], int, list[str]]:
        """What a POST could have changed: upload directories, session rows, catalog."""
        with self.client("hal") as c:
            catalog = c.get("/v2/_catalog").json()["repositories"]
        return upload_ids(self.server.root), self.rows(), catalog


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def capped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Capped]:
    workdir = tmp_path_factory.mktemp(f"caps-{request.param}")
    config: dict[str, Any] = {
        "http": {"workers": 2},
        "storage": {"maintenance": LIMITS},
        "auth": {"htpasswd": {"path": str(write_htpasswd(workdir / "htpasswd", USERS))}},
    }
    rows: Callable[[], int]
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        database = f"caps_{int(time.time() * 1000)}"
        config["database"] = {"url": cluster.create_database(database), "poolsize": 4}

        def rows() -> int:
            return int(cluster.psql("SELECT count(*) FROM upload_sessions", database))

    server = WharfServer(workdir / "server", config)
    if request.param == "sqlite":

        def rows() -> int:
            with sqlite3.connect(server.root / "wharf.db") as db:
                found: int = db.execute("SELECT count(*) FROM upload_sessions").fetchone()[0]
            return found

    server.start()
    yield Capped(server, rows)
    server.stop()


def assert_too_many(r: httpx.Response, scope: str, limit: int) -> None:
    err = assert_error(r, 429, "TOOMANYREQUESTS")
    assert err["detail"] == {"scope": scope, "limit": limit}
    assert int(r.headers["retry-after"]) > 0


def test_the_excess_post_gets_429_and_changes_nothing(capped: Capped) -> None:
    name, other = unique_name("caps"), unique_name("caps")
    with capped.client("ann") as ann:
        first = start_upload(ann, name)
        start_upload(ann, name)
        before = capped.state()
        assert len(before[0]) >= 2 and before[1] >= 2
        assert_too_many(ann.post(f"/v2/{name}/blobs/uploads/"), "caller", PER_CALLER)
        # the cap is the caller's, over every repository
        assert_too_many(ann.post(f"/v2/{other}/blobs/uploads/"), "caller", PER_CALLER)
        assert capped.state() == before
        # a session open before goes on as usual
        data = b"ann's layer"
        r = ann.patch(first, content=data)
        assert r.status_code == 202 and r.headers["range"] == f"0-{len(data) - 1}"
        # a monolithic upload and a mount leave no session open: not capped
        digest = push_blob(ann, name, b"monolithic")
        r = ann.post(f"/v2/{other}/blobs/uploads/", params={"mount": digest, "from": name})
        assert r.status_code == 201, r.text
        assert ann.get(f"/v2/{other}/blobs/{digest}").content == b"monolithic"
        push_image(ann, name, "v1", [b"layer pushed whole"])
        assert name in capped.state()[2]


def test_finishing_or_cancelling_a_session_frees_its_slot(capped: Capped) -> None:
    name = unique_name("caps")
    data = b"ben's layer"
    with capped.client("ben") as ben:
        finished, cancelled = start_upload(ben, name), start_upload(ben, name)
        assert_too_many(ben.post(f"/v2/{name}/blobs/uploads/"), "caller", PER_CALLER)
        r = ben.put(finished, params={"digest": digest_of(data)}, content=data)
        assert r.status_code == 201, r.text
        third = start_upload(ben, name)
        assert_too_many(ben.post(f"/v2/{name}/blobs/uploads/"), "caller", PER_CALLER)
        assert ben.delete(cancelled).status_code == 204
        fourth = start_upload(ben, name)
        # a session whose digest did not match is over too (its bytes are dropped)
        assert ben.patch(third, content=b"something else").status_code == 202
        r = ben.put(third, params={"digest": digest_of(data)})
        assert_error(r, 400, "DIGEST_INVALID")
        start_upload(ben, name)
        assert_too_many(ben.post(f"/v2/{name}/blobs/uploads/"), "caller", PER_CALLER)
        assert ben.get(f"/v2/{name}/blobs/{digest_of(data)}").content == data
        assert ben.get(fourth).status_code == 204


def test_users_have_their_own_cap_and_share_the_repositorys(capped: Capped) -> None:
    name, other = unique_name("caps"), unique_name("caps")
    with capped.client("cat") as cat, capped.client("dan") as dan:
        start_upload(cat, name)
        start_upload(cat, name)
        assert_too_many(cat.post(f"/v2/{name}/blobs/uploads/"), "caller", PER_CALLER)
        # cat's cap does not stop dan, until the repository holds its 3
        mine = start_upload(dan, name)
        before = capped.state()
        assert_too_many(dan.post(f"/v2/{name}/blobs/uploads/"), "repository", PER_REPOSITORY)
        assert capped.state() == before
        start_upload(dan, other)  # another repository: dan has a slot left
        assert_too_many(dan.post(f"/v2/{other}/blobs/uploads/"), "caller", PER_CALLER)
        # dan's session in the full repository ends: one slot there, for dan's next
        assert dan.delete(mine).status_code == 204
        assert_too_many(cat.post(f"/v2/{name}/blobs/uploads/"), "caller", PER_CALLER)
        start_upload(dan, name)


def test_the_cap_holds_for_concurrent_posts_on_two_workers(capped: Capped) -> None:
    name = unique_name("race")

    def post(user: str) -> int:
        with capped.client(user) as c:
            return c.post(f"/v2/{name}/blobs/uploads/").status_code

    before = upload_ids(capped.server.root)
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(post, ["eve"] * 6 + ["fay"] * 6))
    # each user gets 2; the repository's third slot goes to one of them
    assert sorted(codes) == [202] * PER_REPOSITORY + [429] * (12 - PER_REPOSITORY)
    assert len(upload_ids(capped.server.root) - before) == PER_REPOSITORY


# -- anonymous callers, the purge ------------------------------------------------------


def test_anonymous_callers_are_counted_by_address(
    make_wharf: Callable[..., WharfServer],
) -> None:
    server = make_wharf({"storage": {"maintenance": LIMITS}})
    name = unique_name("anon")

    def post(addr: str) -> httpx.Response:
        # uvicorn takes the client address from X-Forwarded-For sent from 127.0.0.1
        with server.client(headers={"X-Forwarded-For": addr}) as c:
            return c.post(f"/v2/{name}/blobs/uploads/")

    assert post("192.0.2.1").status_code == 202
    assert post("192.0.2.1").status_code == 202
    assert_too_many(post("192.0.2.1"), "caller", PER_CALLER)
    assert post("192.0.2.2").status_code == 202
    assert_too_many(post("192.0.2.2"), "repository", PER_REPOSITORY)
    assert len(upload_ids(server.root)) == PER_REPOSITORY


def test_purged_sessions_free_their_slots(make_wharf: Callable[..., WharfServer]) -> None:
    purging = {"age": "4s", "interval": "1s"}
    server = make_wharf({"storage": {"maintenance": {**LIMITS, "uploadpurging": purging}}})
    name = unique_name("purge")
    with server.client() as c:
        abandoned = [start_upload(c, name) for _ in range(PER_CALLER)]
        assert_too_many(c.post(f"/v2/{name}/blobs/uploads/"), "caller", PER_CALLER)
        deadline = time.monotonic() + 30
        while upload_ids(server.root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert upload_ids(server.root) == set()
        for location in abandoned:
            assert_error(c.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
        for _ in range(PER_CALLER):
            start_upload(c, name)
