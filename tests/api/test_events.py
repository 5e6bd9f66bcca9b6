"""Push, pull and delete notifications (issue #5), checked by a real receiver process.

Each test starts its own registry (``make_wharf``) with ``notifications.endpoints``
pointing at a :class:`~tests.support.receiver.Receiver`, which records every request it
gets and checks its signature.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.oci import (
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
    unique_name,
)
from tests.support.postgres import PostgresCluster
from tests.support.receiver import Receiver
from tests.support.server import WharfServer

BLOB = "application/octet-stream"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """A receiver, not started: tests start and stop it (the endpoint "down")."""
    rcv = Receiver(tmp_path / "receiver", secret="s3cret")
    yield rcv
    rcv.stop()


def endpoint(rcv: Receiver, name: str = "listener", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": rcv.url,
        "timeout": "1s",
        "threshold": 3,
        "backoff": "1s",
        "secret": rcv.secret,
        **extra,
    }


def notifications(*endpoints: dict[str, Any], workers: int = 1, **extra: Any) -> dict[str, Any]:
    """A registry config with these endpoints (one worker process unless told otherwise)."""
    return {"http": {"workers": workers}, "notifications": {"endpoints": list(endpoints), **extra}}


def push_manifests(client: httpx.Client, name: str, count: int) -> list[str]:
    """``count`` distinct small manifests tagged t0..t<count-1>; returns their digests."""
    config, layer = b'{"os":"linux"}', b"one small layer"
    push_blob(client, name, config)
    push_blob(client, name, layer)
    digests = []
    for i in range(count):
        body = json.dumps(image_manifest(config, [layer], annotations={"n": str(i)})).encode()
        r = put_manifest(client, name, f"t{i}", body, OCI_MANIFEST)
        assert r.status_code == 201, r.text
        digests.append(digest_of(body))
    return digests


def manifest_pushes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e for e in events if e["action"] == "push" and e["target"].get("mediaType") == OCI_MANIFEST
    ]


def all_pushed(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: len(manifest_pushes(events)) >= count


def assert_in_order_once(events: list[dict[str, Any]], digests: list[str]) -> None:
    pushes = manifest_pushes(events)
    ids = [e["id"] for e in pushes]
    assert len(ids) == len(set(ids)), "an event arrived twice"
    assert [e["target"]["digest"] for e in pushes] == digests
    assert [e["target"]["tag"] for e in pushes] == [f"t{i}" for i in range(len(digests))]


def crash(server: WharfServer) -> None:
    """SIGKILL the registry and all its workers at once (a power cut for the process)."""
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    server.proc = None


def status(client: httpx.Client, name: str = "listener") -> dict[str, Any]:
    r = client.get("/api/events/endpoints")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = next(e for e in r.json()["endpoints"] if e["name"] == name)
    return found


def wait_status(
    client: httpx.Client, check: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = status(client)
        if check(current):
            return current
        assert time.monotonic() < deadline, current
        time.sleep(0.1)


# -- durability -------------------------------------------------------------------------


@pytest.mark.slow
def test_thousand_pushes_while_receiver_is_down_all_arrive_in_order_once(
    receiver: Receiver, tmp_path: Path
) -> None:
    # two workers: both write events, the lease lets one send
    wharf = WharfServer(tmp_path / "wharf", notifications(endpoint(receiver), workers=2))
    try:
        # (a busy machine can make uvicorn's 5 s health check kill a starting worker)
        wharf.start(timeout=120)
        thousand_pushes_arrive(wharf, receiver)
    finally:
        wharf.stop()


def thousand_pushes_arrive(wharf: WharfServer, receiver: Receiver) -> None:
    name = unique_name("events")
    # a connection per request: the pushes are spread over both workers
    with wharf.client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        digests = push_manifests(client, name, 1000)
        before = status(client)
        assert before["pending"] >= 1000 and before["failures"] >= 1
        assert before["last_error"] and before["last_success"] is None
        receiver.start()
        events = receiver.wait_for(all_pushed(1000), timeout=120)
        assert_in_order_once(events, digests)
        assert len({e["source"]["instanceID"] for e in events}) == 2  # written by both
        assert all(r["signature"] == "valid" for r in receiver.records())
        after = wait_status(client, lambda s: s["pending"] == 0)
        assert after["failures"] == 0 and after["last_success"] is not None
    # several events per request (the backlog goes out in batches)
    bodies = [r["body"] for r in receiver.records() if r["status"] == 200]
    assert max(len(b["events"]) for b in bodies) > 1


def test_sigkill_with_pending_events_delivers_them_after_restart(
    make_wharf: Callable[..., WharfServer], receiver: Receiver
) -> None:
    wharf = make_wharf(notifications(endpoint(receiver)))
    name = unique_name("events")
    with wharf.client() as client:
        digests = push_manifests(client, name, 100)
    crash(wharf)
    receiver.start()
    time.sleep(0.5)
    assert manifest_pushes(receiver.events()) == []  # nobody left to send them
    wharf.start()
    events = receiver.wait_for(all_pushed(100), timeout=60)
    assert_in_order_once(events, digests)
    with wharf.client() as client:
        wait_status(client, lambda s: s["pending"] == 0)


# -- failing receivers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "answer", "error"),
    [
        ("500", 500, "HTTP 500"),
        ("hang", 0, "no answer within 1s"),
        ("redirect", 307, "redirect to '/elsewhere' not followed"),
    ],
)
def test_failing_receiver_is_retried_until_it_accepts(
    make_wharf: Callable[..., WharfServer],
    receiver: Receiver,
    mode: str,
    answer: int,
    error: str,
) -> None:
    receiver.set_mode(mode)
    receiver.start()
    wharf = make_wharf(notifications(endpoint(receiver, threshold=2, backoff="0.5s")))
    name = unique_name("events")
    with wharf.client() as client:
        digests = push_manifests(client, name, 3)
        failing = wait_status(client, lambda s: s["failures"] >= 2)
        assert error in failing["last_error"]
        assert failing["pending"] >= 3
        tried = [r for r in receiver.records() if r["status"] == answer]
        assert len(tried) >= 2
        assert all(r["path"] != "/elsewhere" for r in receiver.records())  # not followed
        receiver.set_mode("ok")
        events = receiver.wait_for(all_pushed(3), timeout=30)
        assert_in_order_once(events, digests)
        # the events refused before are the ones delivered now: same ids, retried
        refused = {e["id"] for r in tried for e in r["body"]["events"]}
        assert refused <= {e["id"] for e in events}
        done = wait_status(client, lambda s: s["pending"] == 0)
        assert done["failures"] == 0 and done["dead"] == 0


def test_events_past_maxattempts_are_parked_dead_and_can_be_requeued(
    make_wharf: Callable[..., WharfServer], receiver: Receiver
) -> None:
    receiver.set_mode("500")
    receiver.start()
    ep = endpoint(receiver, threshold=1, backoff="0.2s", maxattempts=2)
    wharf = make_wharf(notifications(ep))
    name = unique_name("events")
    with wharf.client() as client:
        digest = push_blob(client, name, b"a blob nobody will accept")
        wait_status(client, lambda s: s["dead"] == 1 and s["pending"] == 0)
        dead = client.get("/api/events/dead", params={"endpoint": "listener"}).json()["dead"]
        assert len(dead) == 1
        assert dead[0]["attempts"] == 2 and "HTTP 500" in dead[0]["error"]
        assert dead[0]["event"]["target"]["digest"] == digest
        # parked: no more attempts
        tries = len(receiver.records())
        time.sleep(1)
        assert len(receiver.records()) == tries
        metrics = client.get("/metrics").text
        assert 'wharf_events_dead_total{endpoint="listener"} 1.0' in metrics
        receiver.set_mode("ok")
        r = client.post("/api/events/dead/requeue", params={"endpoint": "listener"})
        assert r.json() == {"requeued": 1}
        events = receiver.wait_for(lambda e: len(e) == 1, timeout=30)
        assert events[0]["id"] == dead[0]["event"]["id"]
        wait_status(client, lambda s: s["dead"] == 0 and s["pending"] == 0)
        assert client.get("/api/events/dead").json()["dead"] == []
        unknown = client.get("/api/events/dead", params={"endpoint": "nope"})
        assert unknown.status_code == 400


# -- content of the events --------------------------------------------------------------


def test_ignore_filters_drop_exactly_what_they_name(
    make_wharf: Callable[..., WharfServer], receiver: Receiver
) -> None:
    receiver.start()
    url = receiver.url
    endpoints = [
        endpoint(receiver, "all", url=f"{url}?to=all"),
        endpoint(receiver, "noblobs", url=f"{url}?to=noblobs", ignore={"mediatypes": [BLOB]}),
        endpoint(receiver, "nopulls", url=f"{url}?to=nopulls", ignore={"actions": ["pull"]}),
        endpoint(receiver, "legacy", url=f"{url}?to=legacy", ignoredmediatypes=[OCI_MANIFEST]),
        endpoint(receiver, "off", url=f"{url}?to=off", disabled=True),
    ]
    wharf = make_wharf(notifications(*endpoints))
    name = unique_name("events")
    with wharf.client() as client:
        digest, _ = push_image(client, name, "v1", [b"layer"])
        layer = digest_of(b"layer")
        assert client.get(f"/v2/{name}/manifests/v1").status_code == 200
        assert client.get(f"/v2/{name}/blobs/{layer}").status_code == 200
        assert client.head(f"/v2/{name}/manifests/v1").status_code == 200  # no event
        assert client.delete(f"/v2/{name}/manifests/v1").status_code == 202

    push_blobs = [("push", BLOB), ("push", BLOB)]
    expected = {
        "all": [*push_blobs, ("push", OCI_MANIFEST), ("pull", OCI_MANIFEST), ("pull", BLOB)],
        "noblobs": [("push", OCI_MANIFEST), ("pull", OCI_MANIFEST)],
        "nopulls": [*push_blobs, ("push", OCI_MANIFEST)],
        "legacy": [*push_blobs, ("pull", BLOB)],
    }
    for key in expected:
        expected[key].append(("delete", ""))  # a tag delete has no media type: never ignored

    def by_endpoint() -> dict[str, Counter[tuple[str, str]]]:
        got: dict[str, Counter[tuple[str, str]]] = {}
        for r in receiver.records():
            to = r["path"].split("to=")[1]
            for e in r["body"]["events"]:
                key = (e["action"], e["target"].get("mediaType", ""))
                got.setdefault(to, Counter())[key] += 1
        return got

    want = {k: Counter(v) for k, v in expected.items()}
    deadline = time.monotonic() + 30
    while by_endpoint() != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert by_endpoint() == want
    pushed = [e for e in receiver.events() if e["target"].get("digest") == digest]
    assert pushed and all(e["target"]["repository"] == name for e in pushed)


def test_event_fields_signature_and_cursor_api(
    make_wharf: Callable[..., WharfServer], receiver: Receiver
) -> None:
    receiver.start()
    wrong = endpoint(receiver, "wrongkey", url=f"{receiver.url}?wrong", secret="other")
    ep = endpoint(receiver, ignore={"actions": ["pull"]})
    wharf = make_wharf(notifications(ep, wrong, events={"includereferences": True}))
    name = unique_name("events")
    with wharf.client() as client:
        digest, _ = push_image(client, name, "v1", [b"layer"], config=b"{}")
        events = receiver.wait_for(lambda e: len(e) >= 6)
        mine = [r for r in receiver.records() if "wrong" not in r["path"]]
        assert {r["signature"] for r in mine} == {"valid"}
        others = [r for r in receiver.records() if "wrong" in r["path"]]
        assert others and {r["signature"] for r in others} == {"invalid"}
        assert {r["headers"]["Content-Type"] for r in mine} == {
            "application/vnd.docker.distribution.events.v1+json"
        }
        manifest = next(e for e in events if e["target"].get("digest") == digest)
        target = manifest["target"]
        assert target["url"] == f"{wharf.url}/v2/{name}/manifests/{digest}"
        assert target["tag"] == "v1" and target["length"] == target["size"]
        assert {r["digest"] for r in target["references"]} == {
            digest_of(b"{}"),
            digest_of(b"layer"),
        }
        assert manifest["request"]["method"] == "PUT"
        assert manifest["request"]["useragent"].startswith("python-httpx")
        assert set(manifest["source"]) == {"addr", "instanceID"}

        page = client.get("/api/events", params={"after": 0, "limit": 2}).json()
        assert len(page["events"]) == 2
        rest = client.get("/api/events", params={"after": page["next"]}).json()
        listed = [e["event"]["id"] for e in page["events"] + rest["events"]]
        assert manifest["id"] in listed and len(listed) == len(set(listed)) == 3


def test_cloudevents_format(make_wharf: Callable[..., WharfServer], receiver: Receiver) -> None:
    receiver.start()
    wharf = make_wharf(notifications(endpoint(receiver, format="cloudevents")))
    name = unique_name("events")
    with wharf.client() as client:
        digest = push_blob(client, name, b"cloud")
    receiver.wait_for(lambda e: len(e) == 1)
    record = receiver.records()[0]
    assert record["headers"]["Content-Type"] == "application/cloudevents+json"
    body = record["body"]
    assert body["specversion"] == "1.0" and body["type"] == "dev.wharf.registry.push"
    assert body["subject"] == f"{name}@{digest}" and body["id"] == body["data"]["id"]


# -- several nodes ----------------------------------------------------------------------


def test_two_nodes_on_postgres_deliver_each_event_once(
    postgres: PostgresCluster, receiver: Receiver, tmp_path: Path
) -> None:
    url = postgres.create_database()
    config = {
        "http": {"workers": 1},
        "database": {"url": url},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "shared")}},
        **notifications(endpoint(receiver)),
    }
    nodes = [WharfServer(tmp_path / n, json.loads(json.dumps(config))) for n in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        name = unique_name("events")
        with nodes[0].client() as a, nodes[1].client() as b:
            digests = push_manifests(a, name, 1)
            config_blob, layer = b'{"os":"linux"}', b"one small layer"
            for i in range(1, 100):
                body = json.dumps(
                    image_manifest(config_blob, [layer], annotations={"n": str(i)})
                ).encode()
                r = put_manifest((a, b)[i % 2], name, f"t{i}", body, OCI_MANIFEST)
                assert r.status_code == 201
                digests.append(digest_of(body))
        receiver.start()
        events = receiver.wait_for(all_pushed(100), timeout=60)
        time.sleep(1)  # anything sent twice would come now
        assert_in_order_once(receiver.events(), digests)
        sources = {e["source"]["instanceID"] for e in events}
        assert len(sources) == 2  # written by both nodes, delivered once
    finally:
        for node in nodes:
            node.stop()


def test_actor_is_the_user_and_the_api_is_for_admins(
    make_wharf: Callable[..., WharfServer], receiver: Receiver, tmp_path: Path
) -> None:
    receiver.start()
    config = {**htpasswd_config(tmp_path), **notifications(endpoint(receiver))}
    wharf = make_wharf(config)
    with wharf.client(auth=("alice", PASSWORDS["alice"])) as alice:
        digest = push_blob(alice, "team-a/events", b"alice's blob")
        assert alice.get("/api/events/endpoints").status_code == 403
    events = receiver.wait_for(lambda e: len(e) == 1)
    assert events[0]["actor"] == {"name": "alice"}
    assert events[0]["target"]["digest"] == digest
    with wharf.client() as anonymous:
        assert anonymous.get("/api/events/endpoints").status_code == 401
        assert anonymous.post("/api/events/dead/requeue").status_code == 401
    with wharf.client(auth=("admin", PASSWORDS["admin"])) as admin:
        assert status(admin)["delivered"] == 1
