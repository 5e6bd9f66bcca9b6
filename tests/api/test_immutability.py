"""Immutable tags (issue #16) against a real ``wharf serve`` with htpasswd users and
project roles: rule ``release-*`` on ``team/**``. The first push of a matching tag works,
with skopeo, podman and docker; a push that would move it, a delete of the tag, a
delete of its manifest and a pull replication writing into it are refused with DENIED
naming the rule, and the tag stays where it was; tags the rule does not match move
freely. The rules' API refuses bad input with every field's problem, and guests and
developers cannot change rules; ``wharf immutable`` manages them offline; on PostgreSQL
two concurrent first pushes of one immutable tag leave exactly one winner."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from registry.immutability.hook import ImmutableKeeper
from registry.tables import full_metadata
from tests.support.clients import Dockerd, Podman, Skopeo, run
from tests.support.images import ImageSet, build_images
from tests.support.oci import OCI_MANIFEST, image_manifest, push_blob, push_image
from tests.support.projects import USERS, as_user, basic_config, make_team
from tests.support.quotas import OciLayout, layer_bytes, wharf_cli
from tests.support.reference import ReferenceRegistry
from tests.support.replication import push_layers, replicate, tag_digests
from tests.support.server import WharfServer
from tests.support.slapd import metric

pytestmark = pytest.mark.e2e

RULE = {"repository": "team/**", "tag": "release-*"}
ACCEPT = {
    "Accept": "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
}
PLAIN = "--tls-verify=false"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceRegistry]:
    ref = ReferenceRegistry(tmp_path_factory.mktemp("immutable-ref")).start()
    yield ref
    ref.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, reference: ReferenceRegistry
) -> Iterator[WharfServer]:
    workdir = tmp_path_factory.mktemp("immutable")
    wharf = WharfServer(workdir / "server", basic_config(workdir))
    wharf.config["replication"] = {
        "local": {"url": wharf.url, "username": "admin", "password": USERS["admin"]},
        "rules": [
            {
                "name": "from-ref",
                "remote": {"url": reference.url},
                "direction": "pull",
                "repositories": ["team/mirrored"],
                "tags": ["release-*", "other-*"],
            }
        ],
    }
    wharf.start()
    make_team(wharf)
    yield wharf
    wharf.stop()


@pytest.fixture(scope="module")
def rule(server: WharfServer) -> dict[str, Any]:
    """Rule release-* on team/**, made by mary (a maintainer)."""
    with as_user(server, "mary") as mary:
        r = mary.post("/api/projects/team/immutable", json=RULE)
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    assert made["repository"] == "team/**" and made["tag"] == "release-*"
    assert made["project"] == "team" and made["created_by"] == "mary"
    return made


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("immutable-skopeo"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """Real images (tar layers) for podman and docker: small and multilayer differ."""
    return build_images(tmp_path_factory.mktemp("immutable-images") / "oci", big_mib=1)


def digest_at(server: WharfServer, repo: str, tag: str) -> str | None:
    with as_user(server, "admin") as admin:
        r = admin.head(f"/v2/{repo}/manifests/{tag}", headers=ACCEPT)
    assert r.status_code in (200, 404), r.status_code
    return r.headers["docker-content-digest"] if r.status_code == 200 else None


def api_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    errors = r.json()["errors"]
    assert [e["code"] for e in errors] == [code], errors
    found: dict[str, Any] = errors[0]
    assert found["message"]
    return found


def says_refused(output: str, rule: dict[str, Any], repo: str, tag: str) -> None:
    """A client's output shows the registry's DENIED with the rule named."""
    low = output.lower()
    assert "denied" in low, output
    assert f"tag {repo}:{tag} is immutable by rule {rule['id']}" in output, output
    assert "(repository team/**, tag release-*)" in output, output


def denied_body(r: httpx.Response, rule: dict[str, Any], repo: str, tag: str) -> None:
    assert r.status_code == 403, (r.status_code, r.text)
    error = r.json()["errors"][0]
    assert error["code"] == "DENIED"
    assert f"immutable by rule {rule['id']} (repository team/**, tag release-*)" in error["message"]
    assert error["detail"] == {
        "project": "team",
        "repository": repo,
        "tag": tag,
        "rule": {"id": rule["id"], "repository": "team/**", "tag": "release-*"},
    }


# -- skopeo ----------------------------------------------------------------


def test_skopeo_first_push_works_a_move_is_refused(
    server: WharfServer, rule: dict[str, Any], skopeo: Skopeo, tmp_path: Path
) -> None:
    layout = OciLayout(tmp_path / "layout")
    first = layout.image("one", [layer_bytes("immutable-one", 4096)])
    second = layout.image("two", [layer_bytes("immutable-two", 4096)])
    creds = ("--dest-tls-verify=false", "--dest-creds", f"dave:{USERS['dave']}")
    target = f"docker://{server.host}/team/app:release-1"
    skopeo.copy(layout.ref("one"), target, *creds, "--preserve-digests")
    assert digest_at(server, "team/app", "release-1") == first.digest
    # pushing the same image again is no move
    skopeo.copy(layout.ref("one"), target, *creds, "--preserve-digests")
    moved = skopeo("copy", "--retry-times", "0", *creds, layout.ref("two"), target, check=False)
    assert moved.returncode != 0
    says_refused(moved.stderr, rule, "team/app", "release-1")
    assert digest_at(server, "team/app", "release-1") == first.digest
    # a tag the rule does not match moves freely
    free = f"docker://{server.host}/team/app:dev-1"
    skopeo.copy(layout.ref("one"), free, *creds, "--preserve-digests")
    skopeo.copy(layout.ref("two"), free, *creds, "--preserve-digests")
    assert digest_at(server, "team/app", "dev-1") == second.digest
    # nor does it match outside its project (the rule is team's)
    with as_user(server, "admin") as admin:
        one, _ = push_image(admin, "pub/base", "release-1", [b"pub one"])
        two, _ = push_image(admin, "pub/base", "release-1", [b"pub two"])
    assert one != two and digest_at(server, "pub/base", "release-1") == two


# -- podman and docker -----------------------------------------------------


def test_podman_move_is_refused(
    server: WharfServer, rule: dict[str, Any], images: ImageSet
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="wi-podman-"))  # podman's runroot: < 50 chars
    podman = Podman(workdir)
    ref = f"{server.host}/team/app:release-podman"
    try:
        podman("login", PLAIN, "-u", "dave", "-p", USERS["dave"], server.host)
        small = podman("pull", "-q", images.ref("small")).stdout.split()[-1]
        podman("tag", small, ref)
        podman("push", PLAIN, ref)
        first = digest_at(server, "team/app", "release-podman")
        assert first is not None
        podman("untag", small, ref)
        multilayer = podman("pull", "-q", images.ref("multilayer")).stdout.split()[-1]
        assert multilayer != small
        podman("tag", multilayer, ref)
        moved = podman("push", PLAIN, ref, check=False)
        assert moved.returncode != 0, moved.stdout
        says_refused(moved.stdout + moved.stderr, rule, "team/app", "release-podman")
        assert digest_at(server, "team/app", "release-podman") == first
        podman("logout", server.host)
    finally:
        podman.reset()
        shutil.rmtree(workdir, ignore_errors=True)


def test_docker_move_is_refused(
    server: WharfServer,
    rule: dict[str, Any],
    images: ImageSet,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    dockerd = Dockerd().start()
    try:
        config = tmp_path / "docker-config"
        config.mkdir()
        (config / "config.json").write_text("{}")
        env = {**dockerd.env, "DOCKER_CONFIG": str(config)}

        def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return run(["docker", *args], env=env, check=check)

        login = ["docker", "login", "-u", "dave", "--password-stdin", server.host]
        assert "Login Succeeded" in run(login, env=env, input=USERS["dave"]).stdout
        ref = f"{server.host}/team/app:release-docker"
        for name in ("small", "multilayer"):
            archive = tmp_path / f"{name}.tar"
            skopeo.copy(images.ref(name), f"docker-archive:{archive}:immutable/{name}:loaded")
            docker("load", "-i", str(archive))
        docker("tag", "immutable/small:loaded", ref)
        pushed = docker("push", ref).stdout
        found = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
        assert found, pushed
        assert digest_at(server, "team/app", "release-docker") == found.group(1)
        docker("tag", "immutable/multilayer:loaded", ref)
        moved = docker("push", ref, check=False)
        assert moved.returncode != 0, moved.stdout
        says_refused(moved.stdout + moved.stderr, rule, "team/app", "release-docker")
        assert digest_at(server, "team/app", "release-docker") == found.group(1)
        docker("logout", server.host)
    finally:
        dockerd.stop()


# -- deletes ----------------------------------------------------------------


def test_tag_and_manifest_deletes_are_refused(server: WharfServer, rule: dict[str, Any]) -> None:
    repo = "team/deletes"
    with as_user(server, "mary") as mary:  # a maintainer, who may delete
        held, _ = push_image(mary, repo, "release-7", [b"held layer"])
        assert push_image(mary, repo, "latest", [b"held layer"])[0] == held  # 2 tags, 1 manifest
        loose, _ = push_image(mary, repo, "dev-7", [b"loose layer"])
        refused = metric(server, "wharf_immutable_refused_total", action="delete")
        denied_body(mary.delete(f"/v2/{repo}/manifests/release-7"), rule, repo, "release-7")
        denied_body(mary.delete(f"/v2/{repo}/manifests/{held}"), rule, repo, "release-7")
        assert metric(server, "wharf_immutable_refused_total", action="delete") == refused + 2
        # nothing changed: both tags are there, at the manifest
        assert digest_at(server, repo, "release-7") == held
        assert digest_at(server, repo, "latest") == held
        # what no rule holds goes: a tag, a manifest only such tags point at
        assert mary.delete(f"/v2/{repo}/manifests/latest").status_code == 202
        assert mary.delete(f"/v2/{repo}/manifests/{loose}").status_code == 202
        assert digest_at(server, repo, "dev-7") is None
        # once the rule is gone, the tag goes (and comes back for the other tests)
    with as_user(server, "admin") as admin:
        path = f"/api/projects/team/immutable/{rule['id']}"
        assert admin.delete(path).status_code == 204
        assert admin.delete(f"/v2/{repo}/manifests/release-7").status_code == 202
        r = admin.post("/api/projects/team/immutable", json=RULE)
        assert r.status_code == 201, r.text
        rule.update(r.json())
    assert digest_at(server, repo, "release-7") is None


# -- replication ------------------------------------------------------------


def test_pull_replication_into_an_immutable_tag_is_refused(
    server: WharfServer, rule: dict[str, Any], reference: ReferenceRegistry
) -> None:
    repo = "team/mirrored"
    with as_user(server, "admin") as admin:
        local, _ = push_image(admin, repo, "release-r", [b"local release"])
    with reference.client() as ref:
        theirs = push_layers(ref, repo, "release-r", [b"remote release"])
        new = push_layers(ref, repo, "release-new", [b"remote new release"])
        other = push_layers(ref, repo, "other-r", [b"remote other"])
    assert theirs != local
    done = replicate(server.config_path, "from-ref")
    assert done.returncode == 1, done.stderr
    assert "team/mirrored:release-r" in done.stderr and "immutable" in done.stderr, done.stderr
    with as_user(server, "admin") as admin:
        # the immutable tag is unchanged; the run went on with the other tags
        assert tag_digests(admin, repo) == {
            "release-r": local,
            "release-new": new,  # a first push of an immutable tag
            "other-r": other,
        }
        r = admin.get("/api/replication/runs", params={"rule": "from-ref"})
        assert r.status_code == 200, r.text
        run = r.json()["runs"][0]
    assert run["status"] == "failed" and run["tags_copied"] == 2, run
    [error] = run["errors"]
    assert error.startswith("team/mirrored:release-r: "), error
    assert f"immutable by rule {rule['id']}" in error, error


# -- the retention seam -----------------------------------------------------


def test_keeper_names_the_immutable_tags(server: WharfServer, rule: dict[str, Any]) -> None:
    full_metadata()
    engine = create_engine(f"sqlite:///{server.root / 'wharf.db'}")
    try:
        with engine.connect() as conn:
            keep = ImmutableKeeper()
            tags = ["release-1", "dev-1", "latest", "release-"]
            assert keep(conn, "team", "team/app", tags) == {"release-1", "release-"}
            assert keep(conn, "pub", "pub/base", ["release-1"]) == set()
    finally:
        engine.dispose()


# -- the rules' API and CLI ---------------------------------------------------


def test_rules_api_access(server: WharfServer, rule: dict[str, Any]) -> None:
    body = {"repository": "team/app", "tag": "v*"}
    for user in ("gina", "dave"):  # guest, developer
        with as_user(server, user) as c:
            error = api_error(c.post("/api/projects/team/immutable", json=body), 403, "DENIED")
            assert "maintainer or owner" in error["message"]
            listed = c.get("/api/projects/team/immutable")  # members see the rules
            assert listed.status_code == 200, listed.text
            assert [r["id"] for r in listed.json()["rules"]] == [rule["id"]]
            r = c.delete(f"/api/projects/team/immutable/{rule['id']}")
            api_error(r, 403, "DENIED")
    with as_user(server, "eve") as eve:  # no member of the private project
        api_error(eve.get("/api/projects/team/immutable"), 404, "PROJECT_UNKNOWN")
        api_error(eve.post("/api/projects/team/immutable", json=body), 404, "PROJECT_UNKNOWN")
        # a public project's rules: anyone signed in reads them, only its maintainers change
        assert eve.get("/api/projects/pub/immutable").json() == {"project": "pub", "rules": []}
        api_error(eve.post("/api/projects/pub/immutable", json=body), 403, "DENIED")
    with as_user(server, None) as anonymous:
        api_error(anonymous.get("/api/projects/team/immutable"), 401, "UNAUTHORIZED")
    # an owner adds and removes one
    with as_user(server, "olga") as olga:
        r = olga.post("/api/projects/team/immutable", json=body)
        assert r.status_code == 201, r.text
        made = r.json()
        assert olga.delete(f"/api/projects/team/immutable/{made['id']}").status_code == 204
        api_error(
            olga.delete(f"/api/projects/team/immutable/{made['id']}"),
            404,
            "IMMUTABLE_RULE_UNKNOWN",
        )
        rules = olga.get("/api/projects/team/immutable").json()["rules"]
    assert [r["id"] for r in rules] == [rule["id"]]


def test_rules_api_bad_input(server: WharfServer, rule: dict[str, Any]) -> None:
    with as_user(server, "admin") as admin:
        before = admin.get("/api/projects/team/immutable").json()
        path = "/api/projects/team/immutable"
        cases: list[tuple[Any, dict[str, str]]] = [
            ({}, {"repository": "required", "tag": "required"}),
            (
                {"repository": "", "tag": 7, "colour": "red"},
                {
                    "repository": "must not be empty",
                    "tag": "must be a string (a glob: release-*, team/**)",
                    "colour": "unknown field",
                },
            ),
            ({"repository": "team/[abc", "tag": "x" * 256}, {}),
            ([RULE], {"body": 'must be a JSON object: {"repository": ..., "tag": ...}'}),
        ]
        for data, problems in cases:
            error = api_error(admin.post(path, json=data), 400, "IMMUTABLE_RULE_INVALID")
            if problems:
                assert error["detail"] == problems, error
            else:
                assert set(error["detail"]) == {"repository", "tag"}, error
        error = api_error(
            admin.post(path, content=b"{not json", headers={"Content-Type": "application/json"}),
            400,
            "IMMUTABLE_RULE_INVALID",
        )
        r = admin.post(path, content=b"x" * 10_000)
        api_error(r, 400, "IMMUTABLE_RULE_INVALID")
        # the same rule twice; an unknown project; a rule id that is none
        error = api_error(admin.post(path, json=RULE), 409, "IMMUTABLE_RULE_EXISTS")
        api_error(admin.post("/api/projects/nope/immutable", json=RULE), 404, "PROJECT_UNKNOWN")
        api_error(admin.delete(f"{path}/abc"), 404, "IMMUTABLE_RULE_UNKNOWN")
        api_error(admin.delete(f"{path}/999999"), 404, "IMMUTABLE_RULE_UNKNOWN")
        api_error(admin.put(path, json=RULE), 405, "UNSUPPORTED")
        assert admin.get(path).json() == before


def test_cli_add_list_remove(server: WharfServer, rule: dict[str, Any]) -> None:
    added = wharf_cli(server, "immutable", "add", "team", "--repository", "team/cli", "--tag", "v1")
    assert added.returncode == 0, added.stderr
    found = re.search(r"added rule (\d+)  repository team/cli  tag v1", added.stdout)
    assert found, added.stdout
    rule_id = found.group(1)
    listed = wharf_cli(server, "immutable", "list", "team")
    assert listed.returncode == 0, listed.stderr
    assert f"{rule['id']}  repository team/** " in listed.stdout
    assert f"{rule_id}  repository team/cli  tag v1" in listed.stdout
    # in force at once in the running server
    with as_user(server, "mary") as mary:
        push_image(mary, "team/cli", "v1", [b"cli one"])
        config = b'{"architecture":"amd64","os":"linux","n":2}'
        for blob in (config, b"cli two"):
            push_blob(mary, "team/cli", blob)
        r = mary.put(
            "/v2/team/cli/manifests/v1",
            json=image_manifest(config, [b"cli two"]),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 403 and f"rule {rule_id} " in r.text, r.text
    bad = wharf_cli(server, "immutable", "add", "team", "--repository", "", "--tag", "v1")
    assert bad.returncode == 2 and "repository: must not be empty" in bad.stderr
    missing = wharf_cli(server, "immutable", "list", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr
    removed = wharf_cli(server, "immutable", "remove", "team", rule_id)
    assert removed.returncode == 0, removed.stderr
    again = wharf_cli(server, "immutable", "remove", "team", rule_id)
    assert again.returncode == 1 and f"no immutability rule {rule_id}" in again.stderr
    with as_user(server, "mary") as mary:
        r = mary.put(
            "/v2/team/cli/manifests/v1",
            json=image_manifest(config, [b"cli two"]),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 201, r.text


# -- PostgreSQL: concurrent first pushes -----------------------------------


def test_postgres_concurrent_first_pushes_have_one_winner(tmp_path: Path, postgres: Any) -> None:
    config = basic_config(tmp_path)
    config["http"] = {"workers": 2}
    config["database"] = {"url": postgres.create_database()}
    wharf = WharfServer(tmp_path / "server", config).start()
    try:
        make_team(wharf)
        with as_user(wharf, "admin") as admin:
            assert admin.post("/api/projects/team/immutable", json=RULE).status_code == 201
            bodies = []
            for n in range(2):
                config_blob = f'{{"architecture":"amd64","os":"linux","n":{n}}}'.encode()
                layer = f"racer {n}".encode()
                for blob in (config_blob, layer):
                    push_blob(admin, "team/race", blob)
                bodies.append(image_manifest(config_blob, [layer]))

        def put(tag: str, body: dict[str, Any]) -> httpx.Response:
            with as_user(wharf, "admin") as c:
                return c.put(
                    f"/v2/team/race/manifests/{tag}",
                    json=body,
                    headers={"Content-Type": OCI_MANIFEST},
                )

        with ThreadPoolExecutor(2) as pool:
            for round_ in range(12):
                tag = f"release-{round_}"
                answers = list(pool.map(lambda b, t=tag: put(t, b), bodies))
                statuses = sorted(a.status_code for a in answers)
                assert statuses == [201, 403], [a.text for a in answers]
                winner = next(a for a in answers if a.status_code == 201)
                assert digest_at(wharf, "team/race", tag) == winner.headers["docker-content-digest"]
        # and a delete is refused there too
        with as_user(wharf, "admin") as admin:
            r = admin.delete("/v2/team/race/manifests/release-0")
            assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
    finally:
        wharf.stop()
