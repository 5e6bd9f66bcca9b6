"""Real clients log in: docker (private dockerd), skopeo and podman, against Basic
(htpasswd) and token mode (the built-in token service)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.auth import PASSWORDS, htpasswd_config, start_token_server
from tests.support.clients import CommandFailed, Dockerd, Podman, Skopeo
from tests.support.images import ImageSet
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

PLAIN = "--tls-verify=false"


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp(f"auth-{request.param}")
    if request.param == "basic":
        server = WharfServer(workdir / "server", htpasswd_config(workdir)).start()
    else:
        server = start_token_server(workdir)
    yield server
    server.stop()


def _creds(user: str) -> str:
    return f"{user}:{PASSWORDS[user]}"


def test_skopeo_with_credentials(secured: WharfServer, skopeo: Skopeo, images: ImageSet) -> None:
    small = images["small"]
    ref = f"docker://{secured.host}/team-a/skopeo:v1"
    skopeo.copy(
        images.ref("small"), ref, "--dest-tls-verify=false", "--dest-creds", _creds("alice")
    )
    info = skopeo.inspect(ref, PLAIN, "--creds", _creds("bob"))
    assert info["Digest"] == small.digest
    # without credentials, or as a user outside team-a, nothing can be pushed
    for flags in ((), ("--dest-creds", _creds("bob"))):
        with pytest.raises(CommandFailed) as failed:
            skopeo.copy(
                images.ref("small"),
                f"docker://{secured.host}/team-a/skopeo:v2",
                "--dest-tls-verify=false",
                *flags,
            )
        err = failed.value.result.stderr.lower()
        assert "unauthorized" in err or "denied" in err or "authentication required" in err
    tags = skopeo(
        "list-tags", PLAIN, "--creds", _creds("alice"), f"docker://{secured.host}/team-a/skopeo"
    )
    assert '"v1"' in tags.stdout and '"v2"' not in tags.stdout


def test_docker_login_push_pull(
    secured: WharfServer, dockerd: Dockerd, skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    small = images["small"]
    archive = tmp_path / "small.tar"
    skopeo.copy(images.ref("small"), f"docker-archive:{archive}:wharf-auth/small:loaded")
    dockerd("load", "-i", str(archive))
    ref = f"{secured.host}/team-a/docker:v1"
    dockerd("tag", "wharf-auth/small:loaded", ref)

    # before login: the push is refused
    refused = dockerd("push", ref, check=False)
    assert refused.returncode != 0
    out = _login(dockerd, secured, "alice")
    assert "Login Succeeded" in out
    dockerd("push", ref)
    dockerd("rmi", ref)
    pulled = dockerd("pull", ref).stdout
    assert small.config_digest.split(":")[1][:12] in dockerd("image", "inspect", ref).stdout
    assert "Digest: sha256:" in pulled

    # alice may not push outside team-a
    other = f"{secured.host}/other/docker:v1"
    dockerd("tag", "wharf-auth/small:loaded", other)
    denied = dockerd("push", other, check=False)
    assert denied.returncode != 0
    text = (denied.stdout + denied.stderr).lower()
    assert "denied" in text or "unauthorized" in text or "authentication required" in text

    if "tokenserver" in secured.config["auth"]:
        # docker logged in with offline_token=true and then used the refresh-token grant
        assert '"method":"POST","path":"/token","route":"token"' in secured.log()
    assert PASSWORDS["alice"] not in secured.log()
    dockerd("logout", secured.host)
    dockerd("rmi", ref, other, "wharf-auth/small:loaded")


def _login(dockerd: Dockerd, server: WharfServer, user: str) -> str:
    from tests.support.clients import run

    result = run(
        ["docker", "login", "-u", user, "--password-stdin", server.host],
        env=dockerd.env,
        input=PASSWORDS[user],
    )
    return result.stdout


def test_podman_login_pull(
    secured: WharfServer, podman: Podman, skopeo: Skopeo, images: ImageSet
) -> None:
    small = images["small"]
    ref = f"{secured.host}/team-a/podman:v1"
    skopeo.copy(
        images.ref("small"),
        f"docker://{ref}",
        "--dest-tls-verify=false",
        "--dest-creds",
        _creds("alice"),
    )
    wrong = podman("login", PLAIN, "-u", "alice", "-p", "wrong", secured.host, check=False)
    assert wrong.returncode != 0
    podman("login", PLAIN, "-u", "bob", "-p", PASSWORDS["bob"], secured.host)
    podman("pull", PLAIN, ref)
    assert podman.image_inspect(ref)["Digest"] == small.digest
    # bob reads only
    pushed = podman("push", PLAIN, ref, f"{secured.host}/team-a/podman:bob", check=False)
    assert pushed.returncode != 0
    podman("logout", secured.host)
    podman("rmi", ref)
