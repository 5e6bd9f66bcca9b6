"""The projects' roles with docker as the client (the private dockerd), in Basic and in
token mode: each user logs in with a DOCKER_CONFIG of its own, so no credentials pass
from one user to another. docker has no delete: deletes go through the registry API
with the user's credentials, as a client does it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import Dockerd, Skopeo, run
from tests.support.images import ImageSet
from tests.support.projects import (
    USERS,
    refused_status,
    registry_client,
    start_team,
)
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

LOADED = "wharf-projects/small:loaded"
ACCEPT = {
    "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
}


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    server = start_team(tmp_path_factory.mktemp(f"projects-docker-{request.param}"), request.param)
    yield server
    server.stop()


class DockerAs:
    """The docker CLI of one user (None: anonymous) on the shared dockerd: its own
    DOCKER_CONFIG, so its login is seen by no other user."""

    def __init__(self, dockerd: Dockerd, workdir: Path, user: str | None) -> None:
        self.user = user
        config = workdir / f"docker-config-{user or 'anonymous'}"
        config.mkdir(parents=True)
        (config / "config.json").write_text("{}")
        self.env = {**dockerd.env, "DOCKER_CONFIG": str(config)}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env, check=check)

    def login(self, server: WharfServer) -> None:
        assert self.user is not None
        login = ["docker", "login", "-u", self.user, "--password-stdin", server.host]
        out = run(login, env=self.env, input=USERS[self.user]).stdout
        assert "Login Succeeded" in out, out

    def refused(self, *args: str) -> str:
        """Run a command that must fail; its output, lowercased."""
        done = self(*args, check=False)
        assert done.returncode != 0, done.stdout
        return (done.stdout + done.stderr).lower()


def _present(server: WharfServer, path: str) -> bool:
    with registry_client(server, "admin") as admin:
        r = admin.head(path, headers=ACCEPT)
    assert r.status_code in (200, 404), r.status_code
    return r.status_code == 200


def test_docker_role_matrix(
    secured: WharfServer, dockerd: Dockerd, skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    host = secured.host
    app, public = f"{host}/team/app", f"{host}/pub/app"
    archive = tmp_path / "small.tar"
    skopeo.copy(images.ref("small"), f"docker-archive:{archive}:{LOADED}")
    dockerd("load", "-i", str(archive))
    users = {u: DockerAs(dockerd, tmp_path, u) for u in ("admin", "dave", "gina", "eve", None)}
    for user in users.values():
        if user.user is not None:
            user.login(secured)
    admin, dave, gina, eve, anonymous = users.values()

    # a developer pushes team/app (two tags of one manifest); an admin pushes pub/app
    dave("tag", LOADED, f"{app}:docker")
    pushed = dave("push", f"{app}:docker").stdout
    m = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert m, pushed
    digest = m.group(1)
    dave("tag", LOADED, f"{app}:extra")
    assert f"digest: {digest}" in dave("push", f"{app}:extra").stdout
    admin("tag", LOADED, f"{public}:v1")
    admin("push", f"{public}:v1")
    # nothing left locally: the pulls below download
    dockerd("rmi", LOADED, f"{app}:docker", f"{app}:extra", f"{public}:v1")
    assert dockerd("image", "inspect", f"{app}:docker", check=False).returncode != 0

    # a guest pulls, but may not push
    assert f"Digest: {digest}" in gina("pull", f"{app}:docker").stdout
    gina("tag", f"{app}:docker", f"{app}:by-gina")
    said = gina.refused("push", f"{app}:by-gina")
    assert "denied" in said or "insufficient scope" in said, said
    assert not _present(secured, "/v2/team/app/manifests/by-gina")
    dockerd("rmi", f"{app}:docker", f"{app}:by-gina")

    # a stranger cannot pull the private project, nor can anonymous
    said = eve.refused("pull", f"{app}:docker")
    assert "denied" in said, said
    said = anonymous.refused("pull", f"{app}:docker")
    assert any(w in said for w in ("denied", "unauthorized", "no basic auth credentials")), said
    # anonymous pulls the public project: in token mode with docker; in Basic mode docker
    # gives up at /v2/'s Basic challenge before asking for the image (as against any
    # htpasswd registry), so there an anonymous HTTP client shows the project is public
    if "tokenserver" in secured.config["auth"]:
        assert "Digest: sha256:" in anonymous("pull", f"{public}:v1").stdout
        dockerd("rmi", f"{public}:v1")
    else:
        assert "no basic auth credentials" in anonymous.refused("pull", f"{public}:v1")
        with registry_client(secured, None) as c:
            assert c.get("/v2/pub/app/manifests/v1", headers=ACCEPT).status_code == 200

    # a developer deletes neither a tag nor a manifest; a maintainer deletes both
    with registry_client(secured, "dave") as c:
        for ref in ("extra", digest):
            r = c.delete(f"/v2/team/app/manifests/{ref}")
            assert r.status_code == refused_status(secured, "dave"), r.text
    assert _present(secured, "/v2/team/app/manifests/extra")
    with registry_client(secured, "mary") as c:
        assert c.delete("/v2/team/app/manifests/extra").status_code == 202  # the tag only
        assert c.head("/v2/team/app/manifests/extra", headers=ACCEPT).status_code == 404
        assert c.head("/v2/team/app/manifests/docker", headers=ACCEPT).status_code == 200
        assert c.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
    assert not _present(secured, f"/v2/team/app/manifests/{digest}")
    said = gina.refused("pull", f"{app}:docker")  # the manifest went with its tags
    assert "not found" in said or "manifest unknown" in said, said

    for user in users.values():
        if user.user is not None:
            user("logout", host)
