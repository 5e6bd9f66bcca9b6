"""The search API (/api/search): every filter, order, pagination, the browse endpoints,
the index kept current by pushes and deletes, and permission filtering."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.oci import (
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    digest_of,
    push_blob,
)
from tests.support.postgres import PostgresCluster
from tests.support.server import WharfServer

SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
SBOM = "application/vnd.example.sbom.v1+json"
SIGNATURE = "application/vnd.example.signature.v1+json"


def config_blob(os_: str, arch: str, variant: str | None = None, **cfg: Any) -> bytes:
    doc: dict[str, Any] = {
        "architecture": arch,
        "os": os_,
        "created": "2026-11-01T10:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    if variant:
        doc["variant"] = variant
    return json.dumps(doc).encode()


def push_manifest(
    client: httpx.Client, repo: str, ref: str, manifest: dict[str, Any], media_type: str
) -> str:
    body = json.dumps(manifest).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}
    )
    assert r.status_code == 201, r.text
    return digest_of(body)


def push_image(
    client: httpx.Client,
    repo: str,
    ref: str,
    config: bytes,
    layers: list[bytes],
    **extra: Any,
) -> str:
    for blob in [config, *layers]:
        push_blob(client, repo, blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": digest_of(x), "size": len(x)} for x in layers
        ],
        **extra,
    }
    return push_manifest(client, repo, ref, manifest, OCI_MANIFEST)


@dataclass
class World:
    """What the fixture pushed, for the tests to compare against."""

    server: WharfServer
    digests: dict[str, str] = field(default_factory=dict)
    layers: dict[str, str] = field(default_factory=dict)
    between: str = ""  # a time after team-a/app:v1 was pushed, before everything else


L1, L2, L3, L4, L5 = (f"layer {i} bytes".encode() * (i + 1) for i in range(1, 6))


def populate(server: WharfServer) -> World:
    world = World(server)
    with server.client() as c:
        v1_config = config_blob(
            "linux",
            "amd64",
            Labels={SOURCE: "https://git.example/app", "tier": "web"},
            Entrypoint=["/bin/app"],
            Cmd=["--serve"],
            Env=["PATH=/usr/bin", "MODE=prod"],
        )
        world.digests["app:v1"] = push_image(
            c, "team-a/app", "v1", v1_config, [L1, L2], annotations={REVISION: "abc123"}
        )
        world.layers.update(L1=digest_of(L1), L2=digest_of(L2), v1config=digest_of(v1_config))
        time.sleep(1.1)
        world.between = datetime.now(UTC).isoformat()
        time.sleep(0.1)
        v2_config = config_blob(
            "linux", "arm64", "v8", Labels={SOURCE: "https://git.example/app", "tier": "worker"}
        )
        world.digests["app:v2"] = push_image(c, "team-a/app", "v2", v2_config, [L1, L3])
        world.layers.update(L3=digest_of(L3), v2config=digest_of(v2_config))
        # a multi-platform index whose children are pushed by digest only
        children = []
        for arch, layer in (("amd64", L4), ("arm64", L5)):
            cfg = config_blob("linux", arch, Labels={"tier": "tool"})
            digest = push_image(c, "team-b/tool", f"{arch}-tmp", cfg, [layer])
            size = len(c.get(f"/v2/team-b/tool/manifests/{digest}").content)
            children.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": size,
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
            assert c.delete(f"/v2/team-b/tool/manifests/{arch}-tmp").status_code == 202
        world.layers["L4"] = digest_of(L4)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
        world.digests["tool:latest"] = push_manifest(c, "team-b/tool", "latest", index, OCI_INDEX)
        # an artifact (empty config, artifactType) tagged in its own repository
        empty = b"{}"
        push_blob(c, "other/webapp", empty)
        push_blob(c, "other/webapp", b"sbom document")
        artifact = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM,
            "config": {"mediaType": OCI_EMPTY, "digest": digest_of(empty), "size": 2},
            "layers": [
                {
                    "mediaType": "application/spdx+json",
                    "digest": digest_of(b"sbom document"),
                    "size": 13,
                }
            ],
        }
        world.digests["webapp:1.0"] = push_manifest(
            c, "other/webapp", "1.0", artifact, OCI_MANIFEST
        )
        # a signature of team-a/app:v1 (untagged: shown on the image, not in results)
        push_blob(c, "team-a/app", empty)
        push_blob(c, "team-a/app", b"signature")
        signature = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIGNATURE,
            "config": {"mediaType": OCI_EMPTY, "digest": digest_of(empty), "size": 2},
            "layers": [{"mediaType": SIGNATURE, "digest": digest_of(b"signature"), "size": 9}],
            "subject": {
                "mediaType": OCI_MANIFEST,
                "digest": world.digests["app:v1"],
                "size": len(c.get(f"/v2/team-a/app/manifests/{world.digests['app:v1']}").content),
            },
        }
        sig_digest = digest_of(json.dumps(signature).encode())
        world.digests["signature"] = push_manifest(
            c, "team-a/app", sig_digest, signature, OCI_MANIFEST
        )
    return world


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    config: dict[str, Any] = {"http": {"workers": 1}}
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        config["database"] = {"url": cluster.create_database()}
    server = WharfServer(tmp_path_factory.mktemp(f"search-{request.param}"), config).start()
    try:
        yield populate(server)
    finally:
        server.stop()


def search(server: WharfServer, **params: Any) -> list[tuple[str, str]]:
    """(repository, tag) of every result of one search (one page of 1000)."""
    with server.client() as c:
        r = c.get("/api/search", params={"n": 1000, **params})
    assert r.status_code == 200, r.text
    return [(x["repository"], x["tag"]) for x in r.json()["results"]]


ALL = [
    ("other/webapp", "1.0"),
    ("team-a/app", "v1"),
    ("team-a/app", "v2"),
    ("team-b/tool", "latest"),
]


def test_everything_sorted_by_name(world: World) -> None:
    assert search(world.server) == ALL


def test_name_substring_and_prefix(world: World) -> None:
    s = world.server
    assert search(s, name="app") == [ALL[0], ALL[1], ALL[2]]
    assert search(s, name="APP") == [ALL[0], ALL[1], ALL[2]]  # case does not matter
    assert search(s, name="b/to") == [ALL[3]]
    assert search(s, name="%") == []  # LIKE wildcards are plain characters
    assert search(s, prefix="team-") == ALL[1:]
    assert search(s, prefix="team-a/") == ALL[1:3]
    assert search(s, prefix="app") == []


def test_tag(world: World) -> None:
    assert search(world.server, tag="latest") == [ALL[3]]
    assert search(world.server, tag="v2") == [ALL[2]]
    assert search(world.server, tag="v") == []


def test_digest_of_manifest_config_and_layer(world: World) -> None:
    s, layers = world.server, world.layers
    assert search(s, digest=world.digests["app:v1"]) == [ALL[1]]
    assert search(s, digest=layers["L1"]) == [ALL[1], ALL[2]]  # shared layer
    assert search(s, digest=layers["L2"]) == [ALL[1]]
    assert search(s, digest=layers["v2config"]) == [ALL[2]]
    # a layer of an index's child: the tagged index contains it
    assert search(s, digest=layers["L4"]) == [ALL[3]]
    assert search(s, digest="sha256:" + "1" * 64) == []


def test_labels(world: World) -> None:
    s = world.server
    assert search(s, label="tier=web") == [ALL[1]]
    assert search(s, label="tier") == ALL[1:]  # any value; the index has its children's
    assert search(s, label=f"{SOURCE}=https://git.example/app") == ALL[1:3]
    assert search(s, label=[f"{SOURCE}=https://git.example/app", "tier=worker"]) == [ALL[2]]
    assert search(s, label="tier=tool") == [ALL[3]]
    assert search(s, label="tier=nope") == []


def test_annotations(world: World) -> None:
    s = world.server
    assert search(s, annotation=f"{REVISION}=abc123") == [ALL[1]]
    assert search(s, annotation=REVISION) == [ALL[1]]
    assert search(s, annotation=f"{REVISION}=other") == []


def test_media_and_artifact_type(world: World) -> None:
    s = world.server
    assert search(s, mediaType=OCI_INDEX) == [ALL[3]]
    assert search(s, mediaType=OCI_MANIFEST) == ALL[:3]
    assert search(s, artifactType=SBOM) == [ALL[0]]
    assert search(s, artifactType=OCI_CONFIG) == ALL[1:3]


def test_platform(world: World) -> None:
    s = world.server
    assert search(s, platform="linux/arm64") == [ALL[2], ALL[3]]
    assert search(s, platform="linux/arm64/v8") == [ALL[2]]
    assert search(s, platform="linux/amd64") == [ALL[1], ALL[3]]
    assert search(s, platform="windows/amd64") == []
    with s.client() as c:
        r = c.get("/api/search", params={"tag": "latest"})
    assert r.json()["results"][0]["platforms"] == ["linux/amd64", "linux/arm64"]


def test_push_time_range(world: World) -> None:
    s = world.server
    assert search(s, pushed_before=world.between) == [ALL[1]]
    assert search(s, pushed_after=world.between) == [ALL[0], ALL[2], ALL[3]]
    assert search(s, pushed_after="2000-01-01T00:00:00Z", pushed_before="2001-01-01") == []


def test_sort_orders(world: World) -> None:
    s = world.server
    assert search(s, sort="-name") == ALL[::-1]
    assert search(s, sort="tag") == [ALL[0], ALL[3], ALL[1], ALL[2]]
    assert search(s, sort="pushed")[0] == ALL[1]  # v1 was pushed first
    assert search(s, sort="-pushed")[-1] == ALL[1]


def test_result_fields(world: World) -> None:
    with world.server.client() as c:
        r = c.get("/api/search", params={"tag": "v1"})
    (row,) = r.json()["results"]
    assert row["digest"] == world.digests["app:v1"]
    assert row["mediaType"] == OCI_MANIFEST
    assert row["artifactType"] == OCI_CONFIG
    assert row["platforms"] == ["linux/amd64"]
    assert row["size"] > 0
    with world.server.client() as c:
        config_size = len(c.get(f"/v2/team-a/app/blobs/{world.layers['v1config']}").content)
    assert row["imageSize"] == config_size + len(L1) + len(L2)
    assert datetime.fromisoformat(row["pushed"]) < datetime.fromisoformat(world.between)
    assert r.json()["next"] is None and "link" not in r.headers


@pytest.mark.parametrize("sort", ["name", "-name", "tag", "pushed", "-pushed"])
def test_cursor_pagination(world: World, sort: str) -> None:
    expected = search(world.server, sort=sort)
    seen: list[tuple[str, str]] = []
    url: str | None = f"/api/search?n=1&sort={sort}"
    pages = 0
    with world.server.client() as c:
        while url is not None:
            r = c.get(url)
            assert r.status_code == 200, r.text
            rows = r.json()["results"]
            assert len(rows) == 1
            seen += [(x["repository"], x["tag"]) for x in rows]
            link = r.headers.get("link")
            assert (link is None) == (r.json()["next"] is None)
            url = link.split(";")[0].strip("<>") if link else None
            pages += 1
    assert seen == expected and pages == len(ALL)


def test_pagination_keeps_filters(world: World) -> None:
    with world.server.client() as c:
        r = c.get("/api/search", params={"name": "app", "n": 2})
        assert len(r.json()["results"]) == 2
        nxt = r.headers["link"].split(";")[0].strip("<>")
        assert "name=app" in nxt
        r = c.get(nxt)
    assert [(x["repository"], x["tag"]) for x in r.json()["results"]] == [ALL[2]]
    assert r.json()["next"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"digest": "sha256:nothex"},
        {"label": "=x"},
        {"platform": "linux"},
        {"pushed_after": "yesterday"},
        {"sort": "size"},
        {"n": "0"},
        {"n": "many"},
        {"cursor": "garbage"},
    ],
)
def test_bad_parameters(world: World, params: dict[str, str]) -> None:
    with world.server.client() as c:
        r = c.get("/api/search", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["code"] == "INVALID_PARAMETER"


def test_cursor_of_another_order_is_refused(world: World) -> None:
    with world.server.client() as c:
        cursor = c.get("/api/search", params={"n": 1}).json()["next"]
        r = c.get("/api/search", params={"n": 1, "sort": "tag", "cursor": cursor})
    assert r.status_code == 400


def test_repository_endpoint(world: World) -> None:
    with world.server.client() as c:
        r = c.get("/api/search/repository", params={"name": "team-a/app"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["name"] == "team-a/app"
        assert [t["tag"] for t in body["tags"]] == ["v1", "v2"]
        assert body["tags"][1]["platforms"] == ["linux/arm64/v8"]
        assert body["tags"][0]["digest"] == world.digests["app:v1"]
        assert body["counts"] == {"tags": 2, "manifests": 3}  # v1, v2, the signature
        r = c.get("/api/search/repository", params={"name": "nope/nothing"})
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_image_endpoint(world: World) -> None:
    with world.server.client() as c:
        r = c.get("/api/search/image", params={"name": "team-a/app", "reference": "v1"})
        assert r.status_code == 200, r.text
        img = r.json()
        by_digest = c.get(
            "/api/search/image", params={"name": "team-a/app", "reference": img["digest"]}
        ).json()
    assert by_digest == img
    assert img["digest"] == world.digests["app:v1"]
    assert img["tags"] == ["v1"]
    assert [x["digest"] for x in img["layers"]] == [world.layers["L1"], world.layers["L2"]]
    assert [x["size"] for x in img["layers"]] == [len(L1), len(L2)]
    assert img["config"]["digest"] == world.layers["v1config"]
    assert img["image"]["Entrypoint"] == ["/bin/app"]
    assert img["image"]["Cmd"] == ["--serve"]
    assert img["image"]["Env"] == ["PATH=/usr/bin", "MODE=prod"]
    assert img["image"]["labels"]["tier"] == "web"
    assert img["image"]["created"] == "2026-11-01T10:00:00Z"
    assert img["annotations"] == {REVISION: "abc123"}
    assert img["platforms"] == ["linux/amd64"]
    assert [(x["digest"], x["artifactType"]) for x in img["referrers"]] == [
        (world.digests["signature"], SIGNATURE)
    ]


def test_index_image_lists_children(world: World) -> None:
    with world.server.client() as c:
        img = c.get(
            "/api/search/image", params={"name": "team-b/tool", "reference": "latest"}
        ).json()
        child = img["manifests"][1]["digest"]
        child_img = c.get(
            "/api/search/image", params={"name": "team-b/tool", "reference": child}
        ).json()
        r = c.get("/api/search/image", params={"name": "team-b/tool", "reference": "nope"})
    assert [m["platform"]["architecture"] for m in img["manifests"]] == ["amd64", "arm64"]
    assert img["imageSize"] > len(L4) + len(L5)  # both children's configs and layers
    assert img["platforms"] == ["linux/amd64", "linux/arm64"]
    assert child_img["indexes"] == [world.digests["tool:latest"]]
    assert child_img["tags"] == []
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_index_follows_pushes_and_deletes(world: World) -> None:
    s = world.server
    cfg = config_blob("linux", "s390x", Labels={"stage": "temp"})
    with s.client() as c:
        digest = push_image(c, "scratch/moving", "a", cfg, [b"moving layer"])
        assert search(s, label="stage=temp") == [("scratch/moving", "a")]
        # a tag moved to another manifest points at the new one
        other = push_image(c, "scratch/moving", "b", config_blob("linux", "riscv64"), [b"x"])
        push_manifest_copy = c.get(f"/v2/scratch/moving/manifests/{other}")
        r = c.put(
            "/v2/scratch/moving/manifests/a",
            content=push_manifest_copy.content,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 201
        assert search(s, label="stage=temp") == []
        assert search(s, platform="linux/riscv64") == [
            ("scratch/moving", "a"),
            ("scratch/moving", "b"),
        ]
        # deleting a tag removes its row; deleting a manifest removes all its tags
        assert c.delete("/v2/scratch/moving/manifests/b").status_code == 202
        assert search(s, prefix="scratch/") == [("scratch/moving", "a")]
        assert c.delete(f"/v2/scratch/moving/manifests/{other}").status_code == 202
        assert search(s, prefix="scratch/") == []
        # pushing a tag again makes it findable again, facts included
        push_image(c, "scratch/moving", "c", cfg, [b"moving layer"])
        assert search(s, label="stage=temp") == [("scratch/moving", "c")]
        assert c.delete(f"/v2/scratch/moving/manifests/{digest}").status_code == 202
    assert search(s, prefix="scratch/") == []


def test_other_methods_refused(world: World) -> None:
    with world.server.client() as c:
        assert c.post("/api/search").status_code == 405
        assert c.get("/api/search/nothing").status_code == 404


# -- permissions -------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp("search-auth")
    config = {**htpasswd_config(workdir), "http": {"workers": 1}}
    server = WharfServer(workdir / "server", config).start()
    with server.client(auth=("admin", PASSWORDS["admin"])) as admin:
        for repo in ("team-a/app", "team-a/secret", "public/base", "other/thing"):
            push_image(admin, repo, "v1", config_blob("linux", "amd64"), [repo.encode()])
    yield server
    server.stop()


def _search_as(server: WharfServer, user: str | None, **params: Any) -> httpx.Response:
    auth = (user, PASSWORDS[user]) if user else None
    with server.client(auth=auth) as c:
        return c.get("/api/search", params=params)


@pytest.mark.parametrize(
    ("user", "visible"),
    [
        (None, ["public/base"]),
        ("carol", ["public/base"]),
        ("alice", ["public/base", "team-a/app", "team-a/secret"]),
        ("bob", ["other/thing", "public/base", "team-a/app", "team-a/secret"]),
        ("admin", ["other/thing", "public/base", "team-a/app", "team-a/secret"]),
    ],
)
def test_results_limited_to_what_caller_may_pull(
    guarded: WharfServer, user: str | None, visible: list[str]
) -> None:
    r = _search_as(guarded, user)
    assert r.status_code == 200, r.text
    assert [x["repository"] for x in r.json()["results"]] == visible
    # a digest that is in a hidden repository is not found either
    layer = digest_of(b"other/thing")
    found = [x["repository"] for x in _search_as(guarded, user, digest=layer).json()["results"]]
    assert found == (["other/thing"] if "other/thing" in visible else [])


def test_pagination_with_permissions(guarded: WharfServer) -> None:
    with guarded.client(auth=("alice", PASSWORDS["alice"])) as c:
        first = c.get("/api/search", params={"n": 2})
        second = c.get(first.headers["link"].split(";")[0].strip("<>"))
    names = [x["repository"] for x in first.json()["results"] + second.json()["results"]]
    assert names == ["public/base", "team-a/app", "team-a/secret"]


def test_browse_endpoints_check_pull(guarded: WharfServer) -> None:
    params = {"name": "team-a/app", "reference": "v1"}
    with guarded.client() as anon:
        assert anon.get("/api/search/image", params=params).status_code == 401
        assert anon.get("/api/search/repository", params={"name": "team-a/app"}).status_code == 401
        assert anon.get("/api/search/repository", params={"name": "public/base"}).status_code == 200
    with guarded.client(auth=("carol", PASSWORDS["carol"])) as carol:
        r = carol.get("/api/search/image", params=params)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        # refused before existence is looked at: nothing leaks
        r = carol.get("/api/search/repository", params={"name": "team-a/nothing"})
        assert r.status_code == 403
    with guarded.client(auth=("alice", PASSWORDS["alice"])) as alice:
        assert alice.get("/api/search/image", params=params).status_code == 200
    with guarded.client(auth=("alice", "wrong")) as bad:
        assert bad.get("/api/search").status_code == 401


def test_reindex_fills_content_pushed_before_the_index(tmp_path: Any) -> None:
    """Content from before the index (rows missing) is found again after `wharf search
    reindex`; a second run has nothing to do."""
    import sqlite3
    import subprocess
    import sys

    server = WharfServer(tmp_path / "old", {"http": {"workers": 1}}).start()
    try:
        with server.client() as c:
            cfg = config_blob("linux", "ppc64le", Labels={"era": "old"})
            push_image(c, "legacy/app", "v1", cfg, [b"legacy layer"])
    finally:
        server.stop()
    db = sqlite3.connect(server.root / "wharf.db")
    with db:
        for table in ("search_tags", "search_facts", "search_labels", "search_platforms"):
            db.execute(f"DELETE FROM {table}")
    db.close()
    command = [sys.executable, "-m", "registry.cli", "search", "reindex"]
    command += ["-c", str(server.config_path)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "1 tags added, 1 manifests indexed" in out
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "0 tags added, 0 manifests indexed" in out
    server.start()
    try:
        assert search(server, label="era=old") == [("legacy/app", "v1")]
        assert search(server, platform="linux/ppc64le") == [("legacy/app", "v1")]
    finally:
        server.stop()
