"""A project robot driven by skopeo, in Basic and token mode: it pushes where its
permissions say, and is refused a push elsewhere in its project and any access to
another project."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import CommandFailed, Skopeo
from tests.support.images import ImageSet
from tests.support.projects import as_user, start_team
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

PLAIN = "--tls-verify=false"
DEST = "--dest-tls-verify=false"


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    server = start_team(tmp_path_factory.mktemp(f"project-robots-{request.param}"), request.param)
    yield server
    server.stop()


def test_skopeo_with_a_project_robot(
    secured: WharfServer, skopeo: Skopeo, images: ImageSet
) -> None:
    permissions = [
        {"repositories": ["app"], "actions": ["pull", "push"]},
        {"repositories": ["*"], "actions": ["pull"]},
    ]
    with as_user(secured, "mary") as mary:  # a maintainer of team
        r = mary.post("/api/projects/team/robots", json={"name": "ci", "permissions": permissions})
        assert r.status_code == 201, r.text
        creds = f"{r.json()['name']}:{r.json()['secret']}"
    host, small = secured.host, images["small"]
    skopeo.copy(images.ref("small"), f"docker://{host}/team/app:robot", DEST, "--dest-creds", creds)
    info = skopeo.inspect(f"docker://{host}/team/app:robot", PLAIN, "--creds", creds)
    assert info["Digest"] == small.digest
    with pytest.raises(CommandFailed) as failed:  # push elsewhere in its project
        skopeo.copy(
            images.ref("small"), f"docker://{host}/team/other:robot", DEST, "--dest-creds", creds
        )
    err = str(failed.value.result.stderr).lower()
    assert "denied" in err or "unauthorized" in err or "authentication required" in err
    with pytest.raises(CommandFailed):  # another project: not even a public one's pull
        skopeo.inspect(f"docker://{host}/pub/base:v1", PLAIN, "--creds", creds)
    with pytest.raises(CommandFailed):
        skopeo.copy(
            images.ref("small"), f"docker://{host}/pub/robot:v1", DEST, "--dest-creds", creds
        )
    with as_user(secured, "mary") as mary:  # revoked: refused at once
        assert mary.delete("/api/projects/team/robots/ci").status_code == 204
    with pytest.raises(CommandFailed):
        skopeo.inspect(f"docker://{host}/team/app:robot", PLAIN, "--creds", creds)
