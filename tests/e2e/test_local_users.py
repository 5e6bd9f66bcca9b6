"""A local user (``auth.local``), made through ``/api/users`` by an administrator made
with ``wharf user create``, pushes and pulls with skopeo: Basic auth and token mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import CommandFailed, Skopeo
from tests.support.images import ImageSet
from tests.support.server import WharfServer
from tests.support.users import ROOT, start_with_local_users

pytestmark = pytest.mark.e2e

PLAIN = "--tls-verify=false"


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    server = start_with_local_users(
        tmp_path_factory.mktemp(f"local-{request.param}"), request.param
    )
    yield server
    server.stop()


def test_skopeo_as_a_local_user(secured: WharfServer, skopeo: Skopeo, images: ImageSet) -> None:
    with secured.client() as c:
        body = {"name": "kim", "password": "kim-password"}
        assert c.post("/api/users", json=body, auth=ROOT).status_code == 201
    small = images["small"]
    ref = f"docker://{secured.host}/users/kim-app:v1"
    skopeo.copy(
        images.ref("small"), ref, "--dest-tls-verify=false", "--dest-creds", "kim:kim-password"
    )
    info = skopeo.inspect(ref, PLAIN, "--creds", "kim:kim-password")
    assert info["Digest"] == small.digest
    # a wrong password, and a user outside the policy's reach, are refused
    with pytest.raises(CommandFailed) as failed:
        skopeo.inspect(ref, PLAIN, "--creds", "kim:wrong-password")
    err = failed.value.result.stderr.lower()
    assert "unauthorized" in err or "authentication required" in err or "401" in err
    with pytest.raises(CommandFailed):
        skopeo.copy(
            images.ref("small"),
            f"docker://{secured.host}/team-a/kim:v1",
            "--dest-tls-verify=false",
            "--dest-creds",
            "kim:kim-password",
        )
    # disabled: refused at once
    with secured.client() as c:
        assert c.patch("/api/users/kim", json={"disabled": True}, auth=ROOT).status_code == 200
    with pytest.raises(CommandFailed):
        skopeo.inspect(ref, PLAIN, "--creds", "kim:kim-password")
    assert "kim-password" not in secured.log()
