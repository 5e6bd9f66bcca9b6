"""``wharf events status | dead | requeue`` against the database of a running registry
whose receiver refused events until they were parked dead."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.oci import (
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
    put_manifest,
    unique_name,
)
from tests.support.receiver import Receiver
from tests.support.server import WharfServer

WHARF = str(Path(sys.executable).parent / "wharf")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    rcv = Receiver(tmp_path / "receiver")
    yield rcv
    rcv.stop()


def events_cli(server: WharfServer, *args: str) -> subprocess.CompletedProcess[str]:
    command = [WHARF, "events", *args, "-c", str(server.config_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def dead_ids(server: WharfServer, *args: str) -> list[int]:
    out = events_cli(server, "dead", "--json", *args)
    assert out.returncode == 0, out.stderr
    return [d["seq"] for d in json.loads(out.stdout)["dead"]]


def listener_status(server: WharfServer) -> dict[str, Any]:
    out = events_cli(server, "status", "--json")
    assert out.returncode == 0, out.stderr
    found: dict[str, Any] = next(
        e for e in json.loads(out.stdout)["endpoints"] if e["name"] == "listener"
    )
    return found


def test_status_dead_and_requeue_from_the_command_line(
    make_wharf: Callable[..., WharfServer], receiver: Receiver
) -> None:
    receiver.set_mode("500")
    receiver.start()
    listener = {
        "name": "listener",
        "url": receiver.url,
        "threshold": 1,
        "backoff": "0.2s",
        "maxattempts": 2,
    }
    spare = {"name": "spare", "url": receiver.url, "disabled": True}
    wharf = make_wharf({"notifications": {"endpoints": [listener, spare]}})
    name = unique_name("events-cli")
    config, layer = b'{"os":"linux"}', b"a layer nobody will accept"
    manifest = json.dumps(image_manifest(config, [layer])).encode()
    with wharf.client() as client:
        blobs = [push_blob(client, name, config), push_blob(client, name, layer)]
        assert put_manifest(client, name, "v1", manifest, OCI_MANIFEST).status_code == 201

        def parked() -> bool:
            r = client.get("/api/events/endpoints").json()["endpoints"]
            return any(e["name"] == "listener" and e["dead"] == 3 for e in r)

        end = time.monotonic() + 30
        while not parked():
            assert time.monotonic() < end, "events were not parked dead"
            time.sleep(0.1)

    # status: per endpoint, what the outbox tables hold
    out = events_cli(wharf, "status")
    assert out.returncode == 0, out.stderr
    assert "listener  " + receiver.url in out.stdout
    assert "pending 0  delivered 0  dead 3" in out.stdout
    assert "HTTP 500" in out.stdout
    assert "spare (disabled)" in out.stdout

    # dead: one line per parked event, oldest first
    out = events_cli(wharf, "dead")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[:4] == ["ID", "ENDPOINT", "ACTION", "REPOSITORY"]
    assert len(rows) == 3
    for row, digest in zip(rows, [*blobs, digest_of(manifest)], strict=True):
        assert row.split()[1:5] == ["listener", "push", name, digest]
        assert "HTTP 500" in row
    assert rows[2].split()[5:7] == ["(v1)", "2"]  # the tag; attempts
    ids = dead_ids(wharf)
    assert ids == sorted(ids) and len(ids) == 3
    out = events_cli(wharf, "dead", "--limit", "1")
    assert len(out.stdout.splitlines()) == 2 and f"--after {ids[0]}" in out.stderr
    assert dead_ids(wharf, "--after", str(ids[0])) == ids[1:]
    assert dead_ids(wharf, "--endpoint", "spare") == []

    # bad arguments (2) and ids that name no dead event (1) change nothing
    for bad, message in [
        ((), "give their ids"),
        ((str(ids[0]), "--all"), "not both"),
        (("--all", "--endpoint", "nope"), "no endpoint named 'nope'"),
        (("--all", "x"), "not a whole number"),
    ]:
        out = events_cli(wharf, "requeue", *bad)
        assert out.returncode == 2 and message in out.stderr, (bad, out.stderr)
    out = events_cli(wharf, "dead", "--limit", "0")
    assert out.returncode == 2 and "at least 1" in out.stderr
    out = events_cli(wharf, "requeue", "999999")
    assert out.returncode == 1 and "no dead event with id 999999" in out.stderr
    out = events_cli(wharf, "requeue", "--endpoint", "spare", str(ids[2]))
    assert out.returncode == 1 and "for spare" in out.stderr
    assert dead_ids(wharf) == ids
    assert len(receiver.events()) == 0

    # the receiver is fixed: the manifest's event goes out first, then the others
    receiver.set_mode("ok")
    out = events_cli(wharf, "requeue", str(ids[2]))
    assert out.returncode == 0 and out.stdout.strip() == "requeued 1 dead event", out.stderr
    events = receiver.wait_for(lambda e: len(e) == 1, timeout=30)
    assert events[0]["target"]["digest"] == digest_of(manifest)
    assert events[0]["target"]["tag"] == "v1"
    assert dead_ids(wharf) == ids[:2]
    out = events_cli(wharf, "requeue", "--all", "--endpoint", "listener")
    assert out.returncode == 0 and "requeued 2 dead events for listener" in out.stdout
    events = receiver.wait_for(lambda e: len(e) == 3, timeout=30)
    assert [e["target"]["digest"] for e in events[1:]] == blobs
    end = time.monotonic() + 30
    while (state := listener_status(wharf))["delivered"] < 3:
        assert time.monotonic() < end, state
        time.sleep(0.2)
    assert state["dead"] == 0 and state["pending"] == 0
    out = events_cli(wharf, "requeue", "--all")
    assert out.returncode == 0 and "requeued 0 dead events" in out.stdout
    out = events_cli(wharf, "dead")
    assert out.stdout.strip() == "no dead events"
