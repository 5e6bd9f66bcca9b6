"""Project members from LDAP: users and groups (groupOfNames, posixGroup) of a real
slapd, in Basic mode; no rule gives anything, only the roles do."""

from __future__ import annotations

import subprocess
import sys
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


def test_policy_explain_reads_ldap_groups(ldap: WharfServer) -> None:
    """`wharf policy explain` names the LDAP group through which a role applies, as the
    server decides after the user's login (the groups read with the service account)."""
    with ldap.client(auth=("alice", password("alice"))) as alice:
        assert alice.post("/api/projects", json={"name": "explained"}).status_code == 201
        r = alice.put("/api/projects/explained/members/group/ops", json={"role": "developer"})
        assert r.status_code == 201, r.text
    explained = _wharf(ldap, "policy", "explain", "carol", "explained/app")
    assert explained.returncode == 0, explained.stderr
    assert "carol on explained/app: pull,push" in explained.stdout
    assert "role developer in project explained (as group ops)" in explained.stdout
    assert "groups: ops" in explained.stdout
    nobody = _wharf(ldap, "policy", "explain", "nobody-here", "explained/app")
    assert "nobody-here on explained/app: nothing" in nobody.stdout
    assert "not an LDAP user" in nobody.stdout


def _wharf(server: WharfServer, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "registry.cli", *args, "--config", str(server.config_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)
