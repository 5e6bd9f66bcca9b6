"""LDAP users as project members through their LDAP groups, with skopeo as the client,
in Basic and in token mode: no rule gives anything, only the roles the groups hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import CommandFailed, Skopeo
from tests.support.images import ImageSet
from tests.support.projects import registry_client
from tests.support.server import WharfServer, _merge
from tests.support.slapd import ONE_WORKER, Slapd, ldap_settings, password, token_config

pytestmark = pytest.mark.e2e

PLAIN = "--tls-verify=false"
ADMINS_ONLY = {"admins": {"groups": ["admins"]}}  # alice, through the LDAP group admins


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, slapd: Slapd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp(f"projects-ldap-{request.param}")
    ldap = ldap_settings(slapd, "starttls", refresh="5m")
    server = WharfServer(workdir / "server")
    if request.param == "basic":
        _merge(server.config, {"http": ONE_WORKER, "auth": {"ldap": ldap}})
    else:
        _merge(server.config, token_config(workdir, server.port, ldap))
    server.config["auth"]["policy"] = ADMINS_ONLY
    server.auth = True
    server.start()
    with server.client(auth=("alice", password("alice"))) as alice:
        assert alice.post("/api/projects", json={"name": "ldapteam"}).status_code == 201
        for group, role in (("ops", "developer"), ("devs", "guest")):
            r = alice.put(f"/api/projects/ldapteam/members/group/{group}", json={"role": role})
            assert r.status_code == 201, r.text
    yield server
    server.stop()


def test_members_through_ldap_groups_push_and_pull(
    secured: WharfServer, skopeo: Skopeo, images: ImageSet
) -> None:
    ref = f"docker://{secured.host}/ldapteam/app:v1"
    # carol: a developer through the posixGroup ops
    skopeo.copy(
        images.ref("small"), ref, "--dest-tls-verify=false",
        "--dest-creds", f"carol:{password('carol')}",
    )  # fmt: skip
    # bob: a guest through the groupOfNames devs: pulls, may not push
    info = skopeo.inspect(ref, PLAIN, "--creds", f"bob:{password('bob')}")
    assert info["Digest"] == images["small"].digest
    with pytest.raises(CommandFailed) as failed:
        skopeo.copy(
            images.ref("small"), f"docker://{secured.host}/ldapteam/app:bob",
            "--dest-tls-verify=false", "--dest-creds", f"bob:{password('bob')}",
        )  # fmt: skip
    err = failed.value.result.stderr.lower()
    assert "denied" in err or "unauthorized" in err, err
    # no group of carol's is a member of another project: nothing there
    with pytest.raises(CommandFailed):
        skopeo.copy(
            images.ref("small"), f"docker://{secured.host}/other/app:v1",
            "--dest-tls-verify=false", "--dest-creds", f"carol:{password('carol')}",
        )  # fmt: skip
    with registry_client(secured, "alice", password("alice")) as alice:
        r = alice.get("/v2/ldapteam/app/tags/list")
        assert r.status_code == 200 and r.json()["tags"] == ["v1"], r.text
