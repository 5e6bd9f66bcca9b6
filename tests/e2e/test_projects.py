"""The role matrix (docs/projects.md: each role x pull, push, delete manifest, delete
tag, manage members, set quota) driven by skopeo, a real client, and HTTP as clients do
it, in Basic and token mode; and the quick start on an open registry: a push into a
missing project makes it. (docker as the client: test_projects_docker.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import CommandFailed, Skopeo
from tests.support.images import ImageSet
from tests.support.oci import OCI_MANIFEST, push_image
from tests.support.projects import (
    USERS,
    as_user,
    refused_status,
    registry_client,
    start_team,
)
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e

PLAIN = "--tls-verify=false"


@pytest.fixture(scope="module", params=["basic", "token"])
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WharfServer]:
    server = start_team(tmp_path_factory.mktemp(f"projects-{request.param}"), request.param)
    yield server
    server.stop()


def creds(user: str) -> str:
    return f"{user}:{USERS[user]}"


def refused(run: object) -> str:
    assert isinstance(run, pytest.ExceptionInfo)
    return str(run.value.result.stderr).lower()


COLUMNS = ("pull", "push", "delete manifest", "delete tag", "manage members", "set quota")
# docs/projects.md, the roles' table: (caller, project) -> what it may do there
ALL = frozenset(COLUMNS)
WRITER = frozenset({"pull", "push"})
EXPECTED: dict[tuple[str | None, str], frozenset[str]] = {
    ("admin", "team"): ALL,  # a system administrator
    ("olga", "team"): ALL,  # owner
    ("mary", "team"): frozenset({"pull", "push", "delete manifest", "delete tag"}),
    ("dave", "team"): WRITER,  # developer
    ("gus", "team"): WRITER,  # developer through the group devs
    ("gina", "team"): frozenset({"pull"}),  # guest
    ("eve", "team"): frozenset(),  # no role in the private project
    (None, "team"): frozenset(),  # anonymous
    ("eve", "pub"): frozenset({"pull"}),  # the public project
    (None, "pub"): frozenset({"pull"}),
}


class Matrix:
    """One caller's attempt at each column, through skopeo (pull, push, delete manifest)
    and HTTP as a client does it (delete tag, members, quota); each attempt's effect
    read back as the administrator, so an answer and the state agree."""

    def __init__(self, server: WharfServer, skopeo: Skopeo, images: ImageSet) -> None:
        self.server, self.skopeo, self.images = server, skopeo, images
        self.admin = registry_client(server, "admin")
        self.quota = 1 << 40

    def creds(self, who: str | None, flag: str) -> tuple[str, ...]:
        return (f"--{flag}no-creds",) if who is None else (f"--{flag}creds", creds(who))

    def ref(self, project: str, repo: str, tag: str) -> str:
        return f"docker://{self.server.host}/{project}/{repo}:{tag}"

    def has(self, path: str) -> bool:
        r = self.admin.get(path, headers={"Accept": OCI_MANIFEST})
        assert r.status_code in (200, 404), r.text
        return r.status_code == 200

    def prepare(self, who: str | None, project: str) -> str:
        """A manifest of its own for the caller to delete, and a tag; returns the digest."""
        name = who or "anonymous"
        digest, _ = push_image(self.admin, f"{project}/matrix", f"{name}-m", [name.encode()])
        push_image(self.admin, f"{project}/matrix", f"{name}-t", [b"tagged"])
        return digest

    def pull(self, who: str | None, project: str) -> bool:
        ref = self.ref(project, "tool", "v1")
        try:
            info = self.skopeo.inspect(ref, PLAIN, *self.creds(who, ""))
        except CommandFailed:
            return False
        assert info["Digest"] == self.images["small"].digest
        return True

    def push(self, who: str | None, project: str) -> bool:
        tag = f"by-{who or 'anonymous'}"
        try:
            self.skopeo.copy(
                self.images.ref("small"),
                self.ref(project, "tool", tag),
                "--dest-tls-verify=false",
                *self.creds(who, "dest-"),
            )
        except CommandFailed as failed:
            err = failed.result.stderr.lower()
            said = ("denied", "unauthorized", "authentication required", "403 (forbidden)")
            assert any(words in err for words in said), err
            assert not self.has(f"/v2/{project}/tool/manifests/{tag}")
            return False
        assert self.has(f"/v2/{project}/tool/manifests/{tag}")
        return True

    def delete_manifest(self, who: str | None, project: str, digest: str) -> bool:
        ref = self.ref(project, "matrix", f"{who or 'anonymous'}-m")
        done = self.skopeo("delete", PLAIN, *self.creds(who, ""), ref, check=False)
        gone = not self.has(f"/v2/{project}/matrix/manifests/{digest}")
        assert gone == (done.returncode == 0), done.stderr
        return gone

    def delete_tag(self, who: str | None, project: str) -> bool:
        path = f"/v2/{project}/matrix/manifests/{who or 'anonymous'}-t"
        with registry_client(self.server, who) as c:
            r = c.delete(path)
        if r.status_code == 202:
            assert not self.has(path)
            return True
        assert r.status_code == refused_status(self.server, who), r.text
        assert self.has(path)
        return False

    def manage_members(self, who: str | None, project: str) -> bool:
        member = f"new-{who or 'anonymous'}"
        with registry_client(self.server, who) as c:
            r = c.put(f"/api/projects/{project}/members/user/{member}", json={"role": "guest"})
        members = self.admin.get(f"/api/projects/{project}/members").json()["members"]
        added = member in {m["name"] for m in members}
        if r.status_code == 201:
            assert added
            return True
        # a private project is hidden from who has no role in it
        hidden = project == "team" and who == "eve"
        assert r.status_code == (401 if who is None else 404 if hidden else 403), r.text
        assert not added
        return False

    def set_quota(self, who: str | None, project: str) -> bool:
        path = f"/api/projects/{project}/quota"
        before = self.admin.get(path).json()["quota"]
        self.quota += 1
        with registry_client(self.server, who) as c:
            r = c.put(path, json={"bytes": self.quota})
        after = self.admin.get(path).json()["quota"]
        if r.status_code == 200:
            assert after == self.quota
            return True
        assert r.status_code == (401 if who is None else 403), r.text
        assert after == before
        return False

    def attempt(self, who: str | None, project: str) -> frozenset[str]:
        digest = self.prepare(who, project)
        did = {
            "pull": self.pull(who, project),
            "push": self.push(who, project),
            "delete manifest": self.delete_manifest(who, project, digest),
            "delete tag": self.delete_tag(who, project),
            "manage members": self.manage_members(who, project),
            "set quota": self.set_quota(who, project),
        }
        return frozenset(column for column, done in did.items() if done)


def test_skopeo_role_matrix(secured: WharfServer, skopeo: Skopeo, images: ImageSet) -> None:
    """Each role (and no role, anonymous, a system administrator) x each column of the
    roles' table, with skopeo as the client."""
    matrix = Matrix(secured, skopeo, images)
    try:
        for project in ("team", "pub"):  # the image each caller tries to pull
            skopeo.copy(
                images.ref("small"),
                matrix.ref(project, "tool", "v1"),
                "--dest-tls-verify=false",
                *matrix.creds("admin", "dest-"),
            )
        seen = {case: matrix.attempt(*case) for case in EXPECTED}
        assert seen == EXPECTED
        for project in ("team", "pub"):
            r = matrix.admin.put(f"/api/projects/{project}/quota", json={"bytes": None})
            assert r.status_code == 200, r.text
    finally:
        matrix.admin.close()


def test_a_new_member_pulls_at_once(secured: WharfServer, skopeo: Skopeo, images: ImageSet) -> None:
    host = secured.host
    ref = f"docker://{host}/team/fresh:v1"
    skopeo.copy(images.ref("small"), ref, "--dest-tls-verify=false", "--dest-creds", creds("olga"))
    with pytest.raises(CommandFailed):
        skopeo.inspect(ref, PLAIN, "--creds", creds("eve"))
    with as_user(secured, "olga") as olga:
        r = olga.put("/api/projects/team/members/user/eve", json={"role": "guest"})
        assert r.status_code == 201, r.text
    info = skopeo.inspect(ref, PLAIN, "--creds", creds("eve"))
    assert info["Digest"] == images["small"].digest
    with as_user(secured, "eve") as eve:  # and a guest does not manage them
        r = eve.put("/api/projects/team/members/user/eve", json={"role": "owner"})
        assert r.status_code == 403
    with as_user(secured, "olga") as olga:
        assert olga.delete("/api/projects/team/members/user/eve").status_code == 204


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
