"""Content discovery (distribution-spec v1.1): tags, catalog and the referrers API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.oci import (
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    assert_error,
    descriptor,
    digest_of,
    push_blob,
    push_image,
    put_manifest,
    unique_name,
)
from tests.support.server import WharfServer

LINK_RE = re.compile(r'^<([^>]+)>;\s*rel="next"$')


def next_url(r: httpx.Response) -> str | None:
    link = r.headers.get("link")
    if link is None:
        return None
    m = LINK_RE.match(link)
    assert m, link
    return m.group(1)


def walk(client: httpx.Client, url: str, key: str) -> list[list[str]]:
    """Follow Link headers from ``url``; the pages of ``key`` values."""
    pages: list[list[str]] = []
    next_page: str | None = url
    while next_page is not None:
        r = client.get(next_page)
        assert r.status_code == 200, r.text
        pages.append(r.json()[key])
        next_page = next_url(r)
        assert len(pages) < 1000
    return pages


# -- tags ----------------------------------------------------------------------------

# Listed in byte order whatever the database's collation: "Zulu" < "_x" < "alpha".
TAGS = ["1.0", "1.1", "2.0", "alpha", "beta", "latest", "v2_rc-1", "Zulu", "_x"]


@pytest.fixture(scope="module")
def tagged(wharf: WharfServer) -> Iterator[str]:
    name = unique_name("tags")
    with wharf.client() as c:
        _, body = push_image(c, name, TAGS[0], [b"tag test layer"])
        for tag in TAGS[1:]:
            assert put_manifest(c, name, tag, body, OCI_MANIFEST).status_code == 201
    yield name


def test_tags_list(client: httpx.Client, tagged: str) -> None:
    r = client.get(f"/v2/{tagged}/tags/list")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"name": tagged, "tags": sorted(TAGS)}
    assert "link" not in r.headers


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100])
def test_tags_pagination_follows_link(client: httpx.Client, tagged: str, n: int) -> None:
    pages = walk(client, f"/v2/{tagged}/tags/list?n={n}", "tags")
    assert [t for page in pages for t in page] == sorted(TAGS)
    assert all(len(page) == n for page in pages[:-1])
    assert 0 < len(pages[-1]) <= n  # no trailing empty page: a Link means more tags
    assert len(pages) == -(-len(TAGS) // n)


def test_tags_link_header_format(client: httpx.Client, tagged: str) -> None:
    r = client.get(f"/v2/{tagged}/tags/list", params={"n": 2})
    assert r.json()["tags"] == sorted(TAGS)[:2]
    url = next_url(r)
    assert url is not None
    parts = urlsplit(url)
    assert parts.path == f"/v2/{tagged}/tags/list"
    assert parse_qs(parts.query) == {"n": ["2"], "last": [sorted(TAGS)[1]]}


def test_tags_n_limits_results(client: httpx.Client, tagged: str) -> None:
    r = client.get(f"/v2/{tagged}/tags/list", params={"n": 3})
    assert r.status_code == 200
    assert r.json()["tags"] == sorted(TAGS)[:3]


def test_tags_n_zero_is_empty_without_link(client: httpx.Client, tagged: str) -> None:
    r = client.get(f"/v2/{tagged}/tags/list", params={"n": 0})
    assert r.status_code == 200
    assert r.json() == {"name": tagged, "tags": []}
    assert "link" not in r.headers


def test_tags_last_is_exclusive(client: httpx.Client, tagged: str) -> None:
    ordered = sorted(TAGS)
    r = client.get(f"/v2/{tagged}/tags/list", params={"last": ordered[2]})
    assert r.json()["tags"] == ordered[3:]
    r = client.get(f"/v2/{tagged}/tags/list", params={"n": 2, "last": ordered[2]})
    assert r.json()["tags"] == ordered[3:5]
    r = client.get(f"/v2/{tagged}/tags/list", params={"last": ordered[-1]})
    assert r.json()["tags"] == []
    assert "link" not in r.headers


def test_tags_of_a_repository_without_tags(client: httpx.Client) -> None:
    name = unique_name("untagged")
    push_image(client, name, "t", [b"untagged layer"])
    assert client.delete(f"/v2/{name}/manifests/t").status_code == 202
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": name, "tags": []}


def test_tags_of_unknown_repository(client: httpx.Client) -> None:
    assert_error(client.get(f"/v2/{unique_name('ghost')}/tags/list"), 404, "NAME_UNKNOWN")


# -- catalog -------------------------------------------------------------------------


def test_catalog_pagination(client: httpx.Client) -> None:
    prefix = unique_name("cat")
    mine = [f"{prefix}/{i}" for i in ("a", "b", "c", "d", "e")]
    for name in mine:
        push_image(client, name, "v1", [name.encode()])
    full = client.get("/v2/_catalog")
    assert full.status_code == 200
    everything = full.json()["repositories"]
    assert everything == sorted(everything)
    assert set(mine) <= set(everything)
    pages = walk(client, "/v2/_catalog?n=2", "repositories")
    assert [r for page in pages for r in page] == everything
    assert all(len(page) == 2 for page in pages[:-1])
    assert pages[-1]
    r = client.get("/v2/_catalog", params={"n": 2, "last": mine[1]})
    assert r.json()["repositories"] == mine[2:4]
    url = next_url(r)
    assert url is not None
    assert parse_qs(urlsplit(url).query) == {"n": ["2"], "last": [mine[3]]}


def test_catalog_lists_only_repositories_with_manifests(client: httpx.Client) -> None:
    blobs_only = unique_name("blobsonly")
    push_blob(client, blobs_only, b"just a blob")
    assert blobs_only not in client.get("/v2/_catalog").json()["repositories"]


# -- referrers -----------------------------------------------------------------------

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"
CONFIG_TYPE = "application/vnd.example.config.v1+json"


@dataclass(frozen=True)
class Referrers:
    name: str
    subject: str
    expected: dict[str, dict[str, Any]]  # digest -> descriptor the API must return


def _put(client: httpx.Client, name: str, doc: dict[str, Any], media_type: str) -> bytes:
    body = json.dumps(doc).encode()
    r = put_manifest(client, name, digest_of(body), body, media_type)
    assert r.status_code == 201, r.text
    return body


@pytest.fixture(scope="module")
def referrers(wharf: WharfServer) -> Iterator[Referrers]:
    name = unique_name("refs")
    expected: dict[str, dict[str, Any]] = {}
    with wharf.client() as c:
        subject, subject_body = push_image(c, name, "app", [b"subject layer"])
        subject_desc = descriptor(OCI_MANIFEST, subject_body)
        push_blob(c, name, EMPTY_JSON)
        config = b'{"kind": "config-typed"}'
        push_blob(c, name, config)
        for i, kind in enumerate((SBOM, SBOM, SIG)):
            layer = f"payload {i}".encode()
            push_blob(c, name, layer)
            body = _put(
                c,
                name,
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": kind,
                    "config": descriptor(OCI_EMPTY, EMPTY_JSON),
                    "layers": [descriptor("application/octet-stream", layer)],
                    "subject": subject_desc,
                    "annotations": {"org.example.n": str(i)},
                },
                OCI_MANIFEST,
            )
            expected[digest_of(body)] = descriptor(
                OCI_MANIFEST, body, artifactType=kind, annotations={"org.example.n": str(i)}
            )
        # no artifactType: the config's media type stands in for it
        body = _put(
            c,
            name,
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(CONFIG_TYPE, config),
                "layers": [],
                "subject": subject_desc,
            },
            OCI_MANIFEST,
        )
        expected[digest_of(body)] = descriptor(OCI_MANIFEST, body, artifactType=CONFIG_TYPE)
        # an index without artifactType: the descriptor has none
        some_ref = next(iter(expected))
        ref_body = c.get(f"/v2/{name}/manifests/{some_ref}").content
        body = _put(
            c,
            name,
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [descriptor(OCI_MANIFEST, ref_body)],
                "subject": subject_desc,
                "annotations": {"org.example.index": "yes"},
            },
            OCI_INDEX,
        )
        expected[digest_of(body)] = descriptor(
            OCI_INDEX, body, annotations={"org.example.index": "yes"}
        )
        # a referrer of the same subject in another repository is not listed
        other = unique_name("refs-other")
        push_blob(c, other, EMPTY_JSON)
        _put(
            c,
            other,
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": SBOM,
                "config": descriptor(OCI_EMPTY, EMPTY_JSON),
                "layers": [],
                "subject": subject_desc,
            },
            OCI_MANIFEST,
        )
    yield Referrers(name, subject, expected)


def index_of(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    manifests: list[dict[str, Any]] = index["manifests"]
    return manifests


def test_referrers_lists_every_referrer(client: httpx.Client, referrers: Referrers) -> None:
    r = client.get(f"/v2/{referrers.name}/referrers/{referrers.subject}")
    found = index_of(r)
    assert "oci-filters-applied" not in r.headers
    assert {d["digest"]: d for d in found} == referrers.expected
    assert len(found) == len(referrers.expected)  # no duplicates


@pytest.mark.parametrize(("kind", "count"), [(SBOM, 2), (SIG, 1), (CONFIG_TYPE, 1)])
def test_referrers_filtered_by_artifact_type(
    client: httpx.Client, referrers: Referrers, kind: str, count: int
) -> None:
    r = client.get(
        f"/v2/{referrers.name}/referrers/{referrers.subject}", params={"artifactType": kind}
    )
    found = index_of(r)
    assert r.headers["oci-filters-applied"] == "artifactType"
    assert len(found) == count
    for d in found:
        assert d["artifactType"] == kind
        assert d == referrers.expected[d["digest"]]


def test_referrers_filter_matching_nothing(client: httpx.Client, referrers: Referrers) -> None:
    r = client.get(
        f"/v2/{referrers.name}/referrers/{referrers.subject}",
        params={"artifactType": "application/vnd.example.none"},
    )
    assert index_of(r) == []
    assert r.headers["oci-filters-applied"] == "artifactType"


def test_referrers_of_unknown_digest_is_empty_index(
    client: httpx.Client, referrers: Referrers
) -> None:
    r = client.get(f"/v2/{referrers.name}/referrers/{digest_of(b'no such manifest')}")
    assert index_of(r) == []


def test_referrers_in_unknown_repository_is_empty_index(client: httpx.Client) -> None:
    r = client.get(f"/v2/{unique_name('ghost')}/referrers/{digest_of(b'x')}")
    assert index_of(r) == []


def test_referrers_with_invalid_digest_is_400(client: httpx.Client, referrers: Referrers) -> None:
    r = client.get(f"/v2/{referrers.name}/referrers/sha256:not-a-digest")
    assert_error(r, 400, "DIGEST_INVALID")


def test_deleted_referrer_is_no_longer_listed(client: httpx.Client) -> None:
    name = unique_name("refs-del")
    subject, subject_body = push_image(client, name, "app", [b"del subject layer"])
    push_blob(client, name, EMPTY_JSON)
    body = _put(
        client,
        name,
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIG,
            "config": descriptor(OCI_EMPTY, EMPTY_JSON),
            "layers": [],
            "subject": descriptor(OCI_MANIFEST, subject_body),
        },
        OCI_MANIFEST,
    )
    url = f"/v2/{name}/referrers/{subject}"
    assert [d["digest"] for d in index_of(client.get(url))] == [digest_of(body)]
    assert client.delete(f"/v2/{name}/manifests/{digest_of(body)}").status_code == 202
    assert index_of(client.get(url)) == []
