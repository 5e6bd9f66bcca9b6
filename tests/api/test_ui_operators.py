"""The operators' pages over HTTP (issue #17): garbage collection (start a dry run and a
run, follow it, what it reclaimed) and events (delivery state, dead events, requeue), for
administrators only, through /api/gc and /api/events as the viewer."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.oci import push_image
from tests.support.receiver import Receiver
from tests.support.server import WharfServer, _merge


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WharfServer, Receiver]]:
    workdir = tmp_path_factory.mktemp("ui-operators")
    receiver = Receiver(workdir / "receiver")
    receiver.set_mode("500")
    receiver.start()
    listener = {
        "name": "listener",
        "url": receiver.url,
        "threshold": 1,
        "backoff": "0.2s",
        "maxattempts": 2,
        "headers": {"Authorization": ["Bearer s3cr3t-of-the-listener"]},
    }
    config = htpasswd_config(workdir)
    _merge(config, {"http": {"workers": 1}, "storage": {"delete": {"enabled": True}}})
    _merge(config, {"notifications": {"endpoints": [listener]}})
    server = WharfServer(workdir / "server", config).start()
    yield server, receiver
    server.stop()
    receiver.stop()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@contextlib.contextmanager
def browser(server: WharfServer, user: str) -> Iterator[httpx.Client]:
    with server.client(headers={"Accept-Language": "en"}) as c:
        form = {"csrf": _csrf(c.get("/ui/login").text), "username": user, "next": "/ui/"}
        r = c.post("/ui/login", data={**form, "password": PASSWORDS[user]})
        assert r.status_code == 303, r.text
        yield c


def post(c: httpx.Client, path: str, **form: str) -> httpx.Response:
    return c.post(path, data={"csrf": _csrf(c.get("/ui/").text), **form})


def finished(c: httpx.Client, location: str) -> str:
    end = time.monotonic() + 60
    while True:
        page = c.get(location).text
        if "data-follow" not in page:
            return page
        assert time.monotonic() < end, page
        time.sleep(0.2)


def test_garbage_collection_from_the_pages(setup: tuple[WharfServer, Receiver]) -> None:
    server, _ = setup
    with server.client(auth=("admin", PASSWORDS["admin"])) as c:
        push_image(c, "team-a/old", "v1", [b"a layer nobody needs" * 5000])
        assert c.delete("/v2/team-a/old/manifests/v1").status_code == 202
    # grace: 0 would need config; the dry run reports, the run reclaims after the grace
    with browser(server, "admin") as admin:
        page = admin.get("/ui/").text
        assert 'href="/ui/gc"' in page and 'href="/ui/events"' in page
        assert "No runs yet." in admin.get("/ui/gc").text
        r = post(admin, "/ui/gc/start", dry_run="on")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/gc/run?id=")
        page = finished(admin, r.headers["location"])
        assert "(dry run)" in page and "<dd>done</dd>" in page and "Bytes reclaimed" in page
        runs = admin.get("/ui/gc").text
        assert "dry run" in runs and "(api)" in runs
        page = admin.get("/ui/gc", params={"usage": "1"}).text
        assert "Reclaimable" in page and re.search(r"in \d+ blobs and \d+ manifests", page)
        # one run at a time: the API's refusal while one is going on is shown as such
        first = post(admin, "/ui/gc/start")
        second = post(admin, "/ui/gc/start")
        assert first.status_code == 303
        assert second.status_code in (303, 409)
        if second.status_code == 409:
            assert "GC_RUNNING" in second.text
        page = finished(admin, first.headers["location"])
        assert "<dd>done</dd>" in page and "(dry run)" not in page
    with browser(server, "bob") as bob:  # not an administrator
        assert 'href="/ui/gc"' not in bob.get("/ui/").text
        r = bob.get("/ui/gc")
        assert r.status_code == 403 and "bob is not an administrator" in r.text
        r = post(bob, "/ui/gc/start")
        assert r.status_code == 403
    with server.client(auth=("admin", PASSWORDS["admin"])) as c:
        started = 3 if second.status_code == 303 else 2  # and none by bob
        assert len(c.get("/api/gc/runs").json()["runs"]) == started


def test_events_dead_and_requeued_from_the_pages(setup: tuple[WharfServer, Receiver]) -> None:
    server, receiver = setup
    with server.client(auth=("admin", PASSWORDS["admin"])) as c:
        push_image(c, "team-a/evented", "v1", [b"an evented layer"])

        def dead() -> list[str]:
            found = c.get("/api/events/dead", params={"endpoint": "listener"}).json()["dead"]
            return [d["event"]["target"]["repository"] for d in found]

        end = time.monotonic() + 30
        while "team-a/evented" not in dead():
            assert time.monotonic() < end, "no event was parked dead"
            time.sleep(0.1)
    with browser(server, "admin") as admin:
        page = admin.get("/ui/events").text
        assert receiver.url in page and "team-a/evented" in page and "Requeue all" in page
        seq = re.search(r'team-a/evented</td>.*?name="seq" value="(\d+)"', page, re.S)
        assert seq
        receiver.set_mode("ok")
        r = post(admin, "/ui/events/requeue", endpoint="listener", seq=seq.group(1))
        assert r.status_code == 303 and r.headers["location"] == "/ui/events?requeued=1"
        assert f'name="seq" value="{seq.group(1)}"' not in admin.get("/ui/events").text
        r = post(admin, "/ui/events/requeue", endpoint="nowhere")
        assert r.status_code == 400 and "no endpoint named" in r.text
    with browser(server, "bob") as bob:
        assert bob.get("/ui/events").status_code == 403
        assert post(bob, "/ui/events/requeue", endpoint="listener").status_code == 403


def test_the_system_page_reaches_every_dependency(setup: tuple[WharfServer, Receiver]) -> None:
    server, receiver = setup
    receiver.set_mode("500")  # a dependency that fails: the page says which
    with browser(server, "admin") as admin:
        r = admin.get("/ui/system")
        assert r.status_code == 200, r.text
        page = r.text
        assert "Wharf " in page and 'href="/ui/system"' in page
        rows = dict(
            re.findall(
                r"<tr><td>(\w+)</td><td><code>[^<]*</code></td><td class=\"status-(\w+)\"", page
            )
        )
        assert rows["storage"] == "ok" and rows["database"] == "ok"
        assert rows["notifications"] == "fail" and "1 dependency fails" in page
        assert "s3cr3t-of-the-listener" not in page and "***" in page  # credentials hidden
        assert receiver.url in page  # the rest of the configuration is there
        receiver.set_mode("ok")
        assert "every dependency works" in admin.get("/ui/system").text
    with server.client(auth=("admin", PASSWORDS["admin"])) as c:
        found = c.get("/api/system").json()
        assert {x["check"] for x in found["checks"]} >= {"storage", "database", "notifications"}
        assert found["config"]["http"]["addr"] == f"127.0.0.1:{server.port}"
    with browser(server, "bob") as bob:
        assert 'href="/ui/system"' not in bob.get("/ui/").text
        assert bob.get("/ui/system").status_code == 403
    with server.client(auth=("bob", PASSWORDS["bob"])) as c:
        assert c.get("/api/system").status_code == 403
