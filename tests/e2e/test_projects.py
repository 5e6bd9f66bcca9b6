"""The role matrix driven by skopeo, a real client, in Basic and token mode; and the
quick start on an open registry: a push into a missing project makes it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import CommandFailed, Skopeo
from tests.support.images import ImageSet
from tests.support.projects import USERS, as_user, basic_config, make_team, start_token
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

PLAIN = "--tls-verify=false"


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp(f"projects-{request.param}")
    if request.param == "basic":
        server = WharfServer(workdir / "server", basic_config(workdir)).start()
        make_team(server)
    else:
        server = start_token(workdir)
    yield server
    server.stop()


def creds(user: str) -> str:
    return f"{user}:{USERS[user]}"


def refused(run: object) -> str:
    assert isinstance(run, pytest.ExceptionInfo)
    return str(run.value.result.stderr).lower()


def test_skopeo_role_matrix(secured: WharfServer, skopeo: Skopeo, images: ImageSet) -> None:
    small = images["small"]
    host = secured.host
    dest = ("--dest-tls-verify=false", "--dest-creds")
    # a developer pushes
    skopeo.copy(images.ref("small"), f"docker://{host}/team/tool:v1", *dest, creds("dave"))
    # a guest pulls, but may not push
    info = skopeo.inspect(f"docker://{host}/team/tool:v1", PLAIN, "--creds", creds("gina"))
    assert info["Digest"] == small.digest
    with pytest.raises(CommandFailed) as failed:
        skopeo.copy(images.ref("small"), f"docker://{host}/team/tool:v2", *dest, creds("gina"))
    err = refused(failed)
    assert "denied" in err or "unauthorized" in err or "authentication required" in err
    # a stranger cannot even pull from the private project
    with pytest.raises(CommandFailed):
        skopeo.inspect(f"docker://{host}/team/tool:v1", PLAIN, "--creds", creds("eve"))
    # a developer may not delete; a maintainer may
    skopeo.copy(images.ref("small"), f"docker://{host}/team/tool:gone", *dest, creds("mary"))
    delete = ("delete", PLAIN, "--creds")
    with pytest.raises(CommandFailed):
        skopeo(*delete, creds("dave"), f"docker://{host}/team/tool:gone")
    skopeo(*delete, creds("mary"), f"docker://{host}/team/tool:gone")
    with pytest.raises(CommandFailed):  # skopeo deletes the manifest: both tags went
        skopeo.inspect(f"docker://{host}/team/tool:v1", PLAIN, "--creds", creds("mary"))
    # anonymous pulls from a public project, not from a private one
    skopeo.copy(images.ref("small"), f"docker://{host}/pub/tool:v1", *dest, creds("admin"))
    info = skopeo.inspect(f"docker://{host}/pub/tool:v1", PLAIN, "--no-creds")
    assert info["Digest"] == small.digest
    skopeo.copy(images.ref("small"), f"docker://{host}/team/tool:v3", *dest, creds("olga"))
    with pytest.raises(CommandFailed):
        skopeo.inspect(f"docker://{host}/team/tool:v3", PLAIN, "--no-creds")
    # the owner manages members: a new guest pulls at once
    with as_user(secured, "olga") as olga:
        r = olga.put("/api/projects/team/members/user/eve", json={"role": "guest"})
        assert r.status_code == 201, r.text
    info = skopeo.inspect(f"docker://{host}/team/tool:v3", PLAIN, "--creds", creds("eve"))
    assert info["Digest"] == small.digest
    with as_user(secured, "eve") as eve:  # and a guest does not manage them
        r = eve.put("/api/projects/team/members/user/eve", json={"role": "owner"})
        assert r.status_code == 403


def test_missing_project_named_in_the_refusal(
    secured: WharfServer, skopeo: Skopeo, images: ImageSet
) -> None:
    with pytest.raises(CommandFailed) as failed:
        skopeo.copy(
            images.ref("small"),
            f"docker://{secured.host}/nowhere/app:v1",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds("eve"),
        )
    assert "project nowhere does not exist" in refused(failed)


def test_quick_start_push_creates_the_project(
    skopeo: Skopeo, images: ImageSet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = WharfServer(tmp_path_factory.mktemp("open")).start()
    try:
        ref = f"docker://127.0.0.1:{server.port}/team/app:v1"
        skopeo.copy(images.ref("small"), ref, "--dest-tls-verify=false")
        assert skopeo.inspect(ref, PLAIN)["Digest"] == images["small"].digest
        with server.client() as c:
            team = c.get("/api/projects/team").json()
        assert team["name"] == "team" and team["owner"] is None
    finally:
        server.stop()
