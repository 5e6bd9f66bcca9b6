"""The registry answers the base endpoint and round-trips an image."""

import httpx

from tests.support.oci import push_image


def test_base_endpoint(client: httpx.Client) -> None:
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


def test_push_then_pull(client: httpx.Client) -> None:
    digest, body = push_image(client, "smoke/app", "v1", [b"layer-one", b"layer-two"])
    r = client.get("/v2/smoke/app/manifests/v1")
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["docker-content-digest"] == digest
