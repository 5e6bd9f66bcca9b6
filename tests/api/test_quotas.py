"""Quotas and usage per project against a real ``wharf serve`` (SQLite and PostgreSQL),
pushed to with skopeo: a push over the quota refused with the project, quota and usage
named and nothing of it visible; a blob counted once per project and reported as shared
across projects; deletes and GC bringing usage down to what a recount finds; the API's
bad input refused without changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.clients import CommandFailed, Skopeo
from tests.support.gc import pull, run_gc
from tests.support.oci import assert_error, digest_of
from tests.support.quotas import (
    KiB,
    OciLayout,
    layer_bytes,
    make_project,
    recount,
    set_quota,
    usage,
    wharf_cli,
)
from tests.support.receiver import Receiver
from tests.support.server import WharfServer
from tests.support.slapd import ONE_WORKER, metric

pytestmark = pytest.mark.e2e
ADMIN = ("admin", PASSWORDS["admin"])
ALICE = ("alice", PASSWORDS["alice"])


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


_clients: list[httpx.Client] = []


def request_closes(c: httpx.Client) -> None:
    _clients.append(c)


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def api_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An error of Wharf's own API: the OCI error body with Wharf's code."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    errors = r.json()["errors"]
    assert [e["code"] for e in errors] == [code]
    assert errors[0]["message"]
    found: dict[str, Any] = errors[0]
    return found


def project_name() -> str:
    return f"q{uuid.uuid4().hex[:10]}"


def push(skopeo: Skopeo, layout: OciLayout, wharf: WharfServer, tag: str, repo: str) -> None:
    skopeo.copy(
        layout.ref(tag),
        f"docker://{wharf.host}/{repo}:{tag}",
        "--dest-tls-verify=false",
        "--preserve-digests",
    )


def test_pushes_until_the_quota_refuses_one(
    wharf: WharfServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    project = project_name()
    make_project(wharf, project)
    layout = OciLayout(tmp_path / "oci")
    images = [
        layout.image(f"v{i}", [layer_bytes(f"{project}-{i}-{j}", 150 * KiB) for j in range(2)])
        for i in range(4)
    ]
    quota = images[0].total + images[1].total + images[2].total // 2
    c = wharf.client()
    request_closes(c)
    set_quota(c, project, quota)
    repo = f"{project}/app"
    push(skopeo, layout, wharf, "v0", repo)
    push(skopeo, layout, wharf, "v1", repo)
    assert usage(c, project)["bytes"] == images[0].total + images[1].total
    with pytest.raises(CommandFailed) as refused:
        push(skopeo, layout, wharf, "v2", repo)
    said = str(refused.value)
    assert "quota exceeded" in said and project in said and str(quota) in said, said
    # the refused image is not visible
    assert c.get(f"/v2/{repo}/manifests/v2").status_code == 404
    assert c.get(f"/v2/{repo}/manifests/{images[2].digest}").status_code == 404
    assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v0", "v1"]
    found = usage(c, project)
    assert found["quota"] == quota and found["bytes"] <= quota
    assert found["percent"] == round(100 * found["bytes"] / quota, 2)
    assert found["repositories"] == 1
    for tag in ("v0", "v1"):
        pull(c, repo, tag)
    # the error body: DENIED, with the project, its quota and usage
    blob = layer_bytes(f"{project}-big", quota)
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob)
    error = assert_error(r, 403, "DENIED")
    assert error["detail"]["project"] == project
    assert error["detail"]["quota"] == quota
    assert error["detail"]["usage"] == found["bytes"]
    assert c.head(f"/v2/{repo}/blobs/{digest_of(blob)}").status_code == 404
    # raising the quota lets the push through
    set_quota(c, project, None)
    push(skopeo, layout, wharf, "v2", repo)
    pull(c, repo, "v2")
    assert "0 project(s) corrected" in recount(wharf)


def test_a_blob_counts_once_per_project_and_shared_ones_are_reported(
    wharf: WharfServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    team, other = project_name(), project_name()
    make_project(wharf, team)
    make_project(wharf, other)
    layout = OciLayout(tmp_path / "oci")
    image = layout.image("v1", [layer_bytes(f"{team}-shared", 200 * KiB)])
    push(skopeo, layout, wharf, "v1", f"{team}/a")
    push(skopeo, layout, wharf, "v1", f"{team}/b")  # mounted or uploaded: the same blobs
    c = wharf.client()
    request_closes(c)
    found = usage(c, team)
    assert (found["bytes"], found["shared_bytes"], found["repositories"]) == (image.total, 0, 2)
    push(skopeo, layout, wharf, "v1", f"{other}/c")
    assert usage(c, team)["shared_bytes"] == image.total
    assert (usage(c, other)["bytes"], usage(c, other)["shared_bytes"]) == (image.total, image.total)
    assert "0 project(s) corrected" in recount(wharf)


def test_deletes_and_gc_bring_usage_down_to_a_recount(
    wharf: WharfServer, skopeo: Skopeo, tmp_path: Path
) -> None:
    project = project_name()
    make_project(wharf, project)
    layout = OciLayout(tmp_path / "oci")
    keep = layout.image("keep", [layer_bytes(f"{project}-base", 100 * KiB)])
    gone = layout.image(
        "gone",
        [layer_bytes(f"{project}-base", 100 * KiB), layer_bytes(f"{project}-gone", 120 * KiB)],
    )
    repo = f"{project}/app"
    push(skopeo, layout, wharf, "keep", repo)
    push(skopeo, layout, wharf, "gone", repo)
    c = wharf.client()
    request_closes(c)
    both = usage(c, project)["bytes"]
    assert both == keep.total + gone.total - 100 * KiB  # the base layer once
    assert c.delete(f"/v2/{repo}/manifests/{gone.digest}").status_code == 202
    gone_manifest = gone.sizes[gone.digest]
    assert usage(c, project)["bytes"] == both - gone_manifest
    run_gc(wharf.config_path, "--grace", "0s")  # `wharf gc` beside the running server
    assert usage(c, project)["bytes"] == keep.total
    assert "0 project(s) corrected" in recount(wharf)
    assert usage(c, project)["bytes"] == keep.total
    pull(c, repo, "keep")


def test_the_quota_api_refuses_bad_input_and_changes_nothing(wharf: WharfServer) -> None:
    project = project_name()
    make_project(wharf, project)
    c = wharf.client()
    request_closes(c)
    set_quota(c, project, 12345)
    path = f"/api/projects/{project}/quota"
    for body in ({"bytes": -1}, {"bytes": "10GiB"}, {"bytes": True}, {"bytes": 1.5}, {}, [1]):
        api_error(c.put(path, json=body), 400, "QUOTA_INVALID")
    api_error(c.put(path, content=b"{not json"), 400, "QUOTA_INVALID")
    api_error(c.put(path, json={"bytes": 2**63}), 400, "QUOTA_INVALID")
    assert c.get(path).json() == {"project": project, "quota": 12345}
    assert_error(c.put("/api/projects/nosuchproject/quota", json={"bytes": 5}), 404, "NAME_UNKNOWN")
    assert_error(c.get("/api/projects/nosuchproject/usage"), 404, "NAME_UNKNOWN")
    assert_error(c.post(path, json={"bytes": 5}), 405, "UNSUPPORTED")
    assert c.get(f"/api/projects/{project}/other").status_code == 404
    assert c.get(path).json() == {"project": project, "quota": 12345}


def test_the_cli_sets_and_shows_quotas(wharf: WharfServer) -> None:
    project = project_name()
    make_project(wharf, project)
    out = wharf_cli(wharf, "quota", "set", project, "10GiB")
    assert out.returncode == 0, out.stderr
    with wharf.client() as c:
        assert c.get(f"/api/projects/{project}/quota").json()["quota"] == 10 * 1024**3
    out = wharf_cli(wharf, "quota", "show", project)
    assert out.returncode == 0 and project in out.stdout and "10.0 GiB" in out.stdout
    assert wharf_cli(wharf, "quota", "set", project, "none").returncode == 0
    with wharf.client() as c:
        assert c.get(f"/api/projects/{project}/quota").json()["quota"] is None
    bad = wharf_cli(wharf, "quota", "set", project, "-3")
    assert bad.returncode == 2 and "not a size" in bad.stderr
    missing = wharf_cli(wharf, "quota", "set", "nosuchproject", "1MB")
    assert missing.returncode == 1 and "nosuchproject" in missing.stderr


def test_only_administrators_read_and_set_quotas(tmp_path: Path) -> None:
    """With ``auth`` configured a caller with no role in the project may neither read
    nor set its quota (owners and members: tests/api/test_projects.py)."""
    config = {**htpasswd_config(tmp_path), "http": ONE_WORKER}
    server = WharfServer(tmp_path / "server", config).start()
    try:
        project = project_name()
        make_project(server, project)
        c = server.client()
        request_closes(c)
        path = f"/api/projects/{project}/quota"
        assert_error(c.put(path, json={"bytes": 5}), 401, "UNAUTHORIZED")
        assert_error(c.put(path, json={"bytes": 5}, auth=ALICE), 403, "DENIED")
        assert_error(c.get(f"/api/projects/{project}/usage", auth=ALICE), 403, "DENIED")
        assert c.get(path, auth=ADMIN).json()["quota"] is None
        assert c.put(path, json={"bytes": 5}, auth=ADMIN).json()["quota"] == 5
        assert c.get(f"/api/projects/{project}/usage", auth=ADMIN).json()["quota"] == 5
    finally:
        server.stop()


def test_crossing_80_and_100_percent_sends_events(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path / "receiver").start()
    config = {
        "http": ONE_WORKER,
        "notifications": {
            "endpoints": [{"name": "listener", "url": receiver.url, "timeout": "1s"}]
        },
    }
    server = WharfServer(tmp_path / "server", config).start()
    try:
        project = project_name()
        make_project(server, project)
        repo = f"{project}/app"
        c = server.client()
        request_closes(c)
        set_quota(c, project, 1000)
        for size in (700, 150, 100, 50):  # 70 %, 85 % (crosses 80), 95 %, 100 % (crosses 100)
            blob = layer_bytes(f"{project}-{size}", size)
            r = c.post(
                f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
            )
            assert r.status_code == 201, r.text
        blob = layer_bytes(f"{project}-over", 1)
        r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob)
        assert_error(r, 403, "DENIED")

        def quota_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [e for e in events if e["action"].startswith("quota")]

        events = receiver.wait_for(lambda e: len(quota_events(e)) >= 2, timeout=30)
        # the pushes themselves arrive as usual: five blob pushes minus the refused one
        assert len([e for e in events if e["action"] == "push"]) == 4
        found = [(e["action"], e["target"]) for e in quota_events(events)]
        assert [a for a, _ in found] == ["quota_warning", "quota_exceed"]
        assert [(t["project"], t["threshold"], t["usage"], t["quota"]) for _, t in found] == [
            (project, 80, 850, 1000),
            (project, 100, 1000, 1000),
        ]
        assert found[0][1]["repository"] == repo
        # the counter counts what was written: not the events the refused push rolled back
        queued = metric(server, "wharf_events_queued_total", endpoint="listener")
        assert queued == len(events) == 6
    finally:
        server.stop()
        receiver.stop()
