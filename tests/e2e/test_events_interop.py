"""Wharf's notifications against the reference registry's (Debian's docker-registry 2.8):
the same client pushes, pulls and deletes the same image on both, the same receiver code
records both streams, and the events must carry the same fields with the same meaning."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import Skopeo
from tests.support.images import ImageSet
from tests.support.receiver import Receiver
from tests.support.reference import ReferenceRegistry
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

NOTIFY = {"timeout": "2s", "threshold": 3, "backoff": "1s"}


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    """docker-registry with notifications to its own receiver; yields (host:port, receiver)."""
    rcv = Receiver(tmp_path / "ref-receiver").start()
    notifications = {
        "events": {"includereferences": True},
        "endpoints": [{"name": "receiver", "url": rcv.url, **NOTIFY}],
    }
    ref = ReferenceRegistry(tmp_path / "ref", extra={"notifications": notifications})
    try:
        ref.start()
        yield ref.host, rcv
    finally:
        ref.stop()
        rcv.stop()


def exercise(host: str, skopeo: Skopeo, images: ImageSet, out: Path) -> None:
    """Push, pull (by tag, then by digest), mount and delete (by digest: the reference
    cannot delete a tag alone), the same way on both."""
    small = images["small"]
    dest = f"docker://{host}/team/events:v1"
    skopeo.copy(images.ref("small"), dest, "--dest-tls-verify=false")
    skopeo.copy(dest, f"oci:{out}:pulled", "--src-tls-verify=false")
    with httpx.Client(base_url=f"http://{host}", timeout=30) as client:
        accept = {"Accept": images["small"].media_type}
        assert client.get(f"/v2/team/events/manifests/{small.digest}", headers=accept).is_success
        mount = client.post(
            "/v2/team/copy/blobs/uploads/",
            params={"mount": small.config_digest, "from": "team/events"},
        )
        assert mount.status_code == 201, mount.text
        blob = client.delete(f"/v2/team/copy/blobs/{small.config_digest}")
        assert blob.status_code == 202, blob.text
        assert client.delete(f"/v2/team/events/manifests/{small.digest}").status_code == 202


def key(event: dict[str, Any]) -> tuple[str, str, str, str]:
    target = event["target"]
    return (
        event["action"],
        target.get("digest", ""),
        target.get("tag", ""),
        target.get("repository", ""),
    )


def test_events_match_the_reference_registry_field_by_field(
    reference: tuple[str, Receiver],
    make_wharf: Any,
    skopeo: Skopeo,
    images: ImageSet,
    tmp_path: Path,
) -> None:
    ref_host, ref_rcv = reference
    rcv = Receiver(tmp_path / "wharf-receiver").start()
    try:
        wharf: WharfServer = make_wharf(
            {
                "http": {"workers": 1},
                "notifications": {
                    "events": {"includereferences": True},
                    "endpoints": [{"name": "receiver", "url": rcv.url, **NOTIFY}],
                },
            }
        )
        exercise(ref_host, skopeo, images, tmp_path / "from-ref")
        exercise(wharf.host, skopeo, images, tmp_path / "from-wharf")

        def settled(receiver: Receiver) -> list[dict[str, Any]]:
            last = -1
            while True:  # until nothing new arrived for 1.5 s (pulls are batched)
                time.sleep(1.5)
                events = receiver.events()
                if len(events) == last:
                    return events
                last = len(events)

        ref_events, our_events = settled(ref_rcv), settled(rcv)
    finally:
        rcv.stop()

    # the same envelope
    ref_types = {r["headers"]["Content-Type"] for r in ref_rcv.records()}
    our_types = {r["headers"]["Content-Type"] for r in rcv.records()}
    assert ref_types == our_types == {"application/vnd.docker.distribution.events.v1+json"}

    # the same events (action, digest, tag, repository), whatever the order of pulls
    theirs = {key(e): e for e in ref_events}
    ours = {key(e): e for e in our_events}
    assert sorted(ours) == sorted(theirs)
    assert {k[0] for k in theirs} == {"push", "pull", "mount", "delete"}
    manifest_push = next(
        e for e in ref_events if e["action"] == "push" and e["target"].get("references")
    )
    assert manifest_push["target"]["tag"] == "v1"

    for k, their in theirs.items():
        our = ours[k]
        assert set(our) == set(their), k
        # target: same fields, same values, except the URL's host
        t_ours, t_theirs = dict(our["target"]), dict(their["target"])
        assert set(t_ours) == set(t_theirs), (k, t_ours, t_theirs)
        url_ours, url_theirs = t_ours.pop("url", ""), t_theirs.pop("url", "")
        assert url_ours.replace(wharf.host, "HOST") == url_theirs.replace(ref_host, "HOST")
        assert t_ours == t_theirs, k
        # request: same fields; same method and client
        assert set(our["request"]) == set(their["request"]), k
        for field in ("method", "useragent"):
            assert our["request"][field] == their["request"][field], (k, field)
        assert our["request"]["host"] == wharf.host
        assert our["actor"] == their["actor"] == {}
        assert set(our["source"]) == set(their["source"]) == {"addr", "instanceID"}
        assert our["timestamp"].endswith("Z") and their["timestamp"].endswith("Z")
