"""Project members from LDAP: users and groups (groupOfNames, posixGroup) of a real
slapd, in Basic mode; no rule gives anything, only the roles do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.oci import push_image
from tests.support.server import WharfServer
from tests.support.slapd import ONE_WORKER, Slapd, ldap_settings, password


@pytest.fixture(scope="module")
def ldap(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp("projects-ldap")
    config = {
        "http": ONE_WORKER,
        "auth": {"ldap": ldap_settings(slapd), "policy": {"admins": {"groups": ["admins"]}}},
    }
    server = WharfServer(workdir / "server", config).start()
    yield server
    server.stop()


def test_ldap_users_and_groups_as_members(ldap: WharfServer) -> None:
    with ldap.client(auth=("alice", password("alice"))) as alice:  # admins (LDAP group)
        assert alice.post("/api/projects", json={"name": "ldapteam"}).status_code == 201
        for kind, name, role in (("group", "ops", "developer"), ("group", "devs", "guest")):
            r = alice.put(f"/api/projects/ldapteam/members/{kind}/{name}", json={"role": role})
            assert r.status_code == 201, r.text
        push_image(alice, "ldapteam/base", "v1", [b"ldap base"])
    with ldap.client(auth=("carol", password("carol"))) as carol:  # ops: posixGroup
        push_image(carol, "ldapteam/app", "v1", [b"carol's layer"])
    with ldap.client(auth=("bob", password("bob"))) as bob:  # devs: groupOfNames, a guest
        assert bob.get("/v2/ldapteam/app/manifests/v1").status_code == 200
        assert bob.post("/v2/ldapteam/app/blobs/uploads/").status_code == 403
        assert [p["name"] for p in bob.get("/api/projects").json()["projects"]] == ["ldapteam"]
    with ldap.client(auth=("alice", password("alice"))) as alice:  # a user above its group
        r = alice.put("/api/projects/ldapteam/members/user/bob", json={"role": "maintainer"})
        assert r.status_code == 201
    with ldap.client(auth=("bob", password("bob"))) as bob:
        r = bob.delete("/v2/ldapteam/app/manifests/v1")
        assert r.status_code == 202, r.text
