"""Real clients with LDAP users (a private slapd) and robot accounts: ``docker login``
then push and pull through the private dockerd, ``podman login``, ``skopeo --creds``,
against Basic and token mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import CommandFailed, Dockerd, Podman, Skopeo, run
from tests.support.images import ImageSet
from tests.support.server import WharfServer, _merge
from tests.support.slapd import (
    LDAP_POLICY,
    ONE_WORKER,
    Slapd,
    ldap_settings,
    metric,
    password,
    token_config,
)

pytestmark = pytest.mark.e2e

PLAIN = "--tls-verify=false"


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, slapd: Slapd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WharfServer, str]]:
    """A server with LDAP users (refresh 5m: no background lookups during a test) and
    a robot ``robot$ci`` in group ci; yields (server, robot secret)."""
    workdir = tmp_path_factory.mktemp(f"ldap-e2e-{request.param}")
    ldap = ldap_settings(slapd, "starttls", refresh="5m")
    server = WharfServer(workdir / "server")
    if request.param == "basic":
        _merge(server.config, {"http": ONE_WORKER, "auth": {"ldap": ldap, "policy": LDAP_POLICY}})
    else:
        _merge(server.config, token_config(workdir, server.port, ldap))
    server.auth = True
    server.start()
    r = httpx.post(
        f"{server.url}/api/robots",
        json={"name": "ci", "groups": ["ci"]},
        auth=("alice", password("alice")),
    )
    assert r.status_code == 201, r.text
    yield server, r.json()["secret"]
    server.stop()


def _login(dockerd: Dockerd, host: str, user: str, secret: str) -> str:
    result = run(
        ["docker", "login", "-u", user, "--password-stdin", host], env=dockerd.env, input=secret
    )
    return result.stdout


def test_docker_login_push_pull(
    secured: tuple[WharfServer, str],
    dockerd: Dockerd,
    skopeo: Skopeo,
    images: ImageSet,
    tmp_path: Path,
) -> None:
    server, robot_secret = secured
    small = images["small"]
    archive = tmp_path / "small.tar"
    skopeo.copy(images.ref("small"), f"docker-archive:{archive}:wharf-ldap/small:loaded")
    dockerd("load", "-i", str(archive))
    for user, secret, repo in (
        ("bob", password("bob"), "devs/docker"),
        ("robot$ci", robot_secret, "ci/docker"),
    ):
        ref = f"{server.host}/{repo}:v1"
        dockerd("tag", "wharf-ldap/small:loaded", ref)
        assert dockerd("push", ref, check=False).returncode != 0  # not logged in
        assert "Login Succeeded" in _login(dockerd, server.host, user, secret)
        dockerd("push", ref)
        dockerd("rmi", ref)
        binds = metric(server, "wharf_ldap_operations_total", operation="bind")
        pulled = dockerd("pull", ref).stdout
        assert "Digest: sha256:" in pulled
        assert small.config_digest.split(":")[1][:12] in dockerd("image", "inspect", ref).stdout
        # a pull right after a login does not reach the directory (cached credentials;
        # in token mode the registry itself only checks the bearer token)
        assert metric(server, "wharf_ldap_operations_total", operation="bind") == binds
        # the user may not push outside its group
        other = f"{server.host}/ops/{repo.split('/')[0]}:v1"
        dockerd("tag", "wharf-ldap/small:loaded", other)
        denied = dockerd("push", other, check=False)
        assert denied.returncode != 0
        text = (denied.stdout + denied.stderr).lower()
        assert "denied" in text or "unauthorized" in text or "authentication required" in text
        dockerd("logout", server.host)
        dockerd("rmi", ref, other)
    dockerd("rmi", "wharf-ldap/small:loaded")
    assert password("bob") not in server.log() and robot_secret not in server.log()


def test_podman_login_and_skopeo_creds(
    secured: tuple[WharfServer, str], podman: Podman, skopeo: Skopeo, images: ImageSet
) -> None:
    server, robot_secret = secured
    small = images["small"]
    ref = f"{server.host}/ops/podman:v1"
    skopeo.copy(
        images.ref("small"), f"docker://{ref}", "--dest-tls-verify=false",
        "--dest-creds", f"carol:{password('carol')}",
    )  # fmt: skip
    info = skopeo.inspect(f"docker://{ref}", PLAIN, "--creds", f"robot$ci:{robot_secret}")
    assert info["Digest"] == small.digest
    with pytest.raises(CommandFailed):
        skopeo.inspect(f"docker://{ref}", PLAIN, "--creds", "*)(uid=*:alicepw")
    wrong = podman("login", PLAIN, "-u", "carol", "-p", "wrong", server.host, check=False)
    assert wrong.returncode != 0
    podman("login", PLAIN, "-u", "carol", "-p", password("carol"), server.host)
    podman("pull", PLAIN, ref)
    assert podman.image_inspect(ref)["Digest"] == small.digest
    podman("logout", server.host)
    podman("login", PLAIN, "-u", "robot$ci", "-p", robot_secret, server.host)
    pushed = podman("push", PLAIN, ref, f"{server.host}/ci/podman:v1", check=False)
    assert pushed.returncode == 0, pushed.stderr
    denied = podman("push", PLAIN, ref, f"{server.host}/devs/podman:v1", check=False)
    assert denied.returncode != 0
    podman("logout", server.host)
    podman("rmi", ref)
