"""Projects without a server: roles, the directory, how rules and roles combine, the
store's SQL on a real SQLite database, the create-on-push hook and the refresh."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auth.policy import Identity, Policy, Rule, Subjects
from registry.config import ConfigError, load_settings
from registry.meta.changes import Change
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.projects import store
from registry.projects.directory import ProjectDirectory
from registry.projects.errors import LastOwner, ProjectExists, ProjectNotEmpty
from registry.projects.hook import CreateOnPush
from registry.projects.manage import Problems, Projects
from registry.projects.records import Member, Project
from registry.projects.roles import check_role, highest
from registry.projects.setup import DirectoryLoader
from registry.request_context import RequestInfo

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def project(name: str, public: bool = False, *members: tuple[str, str, str]) -> Project:
    return Project(
        1, name, public, "", None, None, NOW, NOW, tuple(Member(k, n, r) for k, n, r in members)
    )


def directory(selfservice: bool = False) -> ProjectDirectory:
    d = ProjectDirectory("library", selfservice)
    d.replace(
        7,
        [
            project(
                "team",
                False,
                ("user", "gina", "guest"),
                ("user", "dave", "developer"),
                ("user", "mary", "maintainer"),
                ("user", "olga", "owner"),
                ("group", "devs", "developer"),
                ("group", "leads", "owner"),
            ),
            project("open", True, ("user", "dave", "developer")),
            project("library"),
        ],
    )
    return d


ALICE = Identity("alice")


def test_roles() -> None:
    assert highest(["guest", "owner", "developer"]) == "owner"
    assert highest([]) is None
    with pytest.raises(ValueError, match="guest, developer, maintainer, owner"):
        check_role("admin")


@pytest.mark.parametrize(
    ("who", "actions"),
    [
        (Identity("gina"), {"pull"}),
        (Identity("dave"), {"pull", "push"}),
        (Identity("mary"), {"pull", "push", "delete"}),
        (Identity("olga"), {"pull", "push", "delete"}),
        (Identity("carl", frozenset({"devs"})), {"pull", "push"}),
        # the highest of the user's and its groups' roles
        (Identity("gina", frozenset({"devs", "leads"})), {"pull", "push", "delete"}),
        (Identity("stranger"), set()),
        (None, set()),
    ],
)
def test_role_matrix_in_a_private_project(who: Identity | None, actions: set[str]) -> None:
    assert directory().explain(who, "team/app").actions == actions


def test_public_project_and_default_project() -> None:
    d = directory()
    assert d.explain(None, "open/app").actions == {"pull"}
    assert d.explain(ALICE, "open/app").actions == {"pull"}
    assert d.explain(Identity("dave"), "open/x/y").actions == {"pull", "push"}
    assert d.project_of("nginx") == "library" and d.project_of("a/b/c") == "a"
    assert d.explain(ALICE, "nginx").reason == "no role in private project library"


def test_missing_project() -> None:
    assert directory().explain(ALICE, "nope/app").actions == set()
    assert directory().missing_project("nope/app") == "nope"
    assert directory().missing_project("team/app") is None
    self_service = directory(selfservice=True)
    assert self_service.explain(ALICE, "nope/app").actions == {"pull", "push"}
    assert self_service.explain(None, "nope/app").actions == set()  # anonymous: never


RULES = [
    Rule(("team/*",), frozenset({"pull"}), users=frozenset({"dave"}), index=0),
    Rule(("*",), frozenset({"pull"}), users=frozenset({"bob"}), index=1),
]


def test_rules_and_roles_add_up() -> None:
    policy = Policy(rules=RULES, admins=Subjects(frozenset({"root"})), roles=directory())
    # a narrower rule does not take away the developer role's push
    assert policy.allowed(Identity("dave"), "team/app") == {"pull", "push"}
    # a rule gives where no role does
    assert policy.allowed(Identity("bob"), "team/app") == {"pull"}
    # a role gives where no rule does
    decision = policy.explain(Identity("mary"), "team/app")
    assert decision.expanded == {"pull", "push", "delete"}
    assert "role maintainer in project team (as user mary)" in decision.reason
    assert "no rule gives mary access" in decision.reason
    assert policy.allowed(None, "open/app") == {"pull"}
    assert policy.allowed(None, "team/app") == frozenset()
    assert policy.allowed(Identity("root"), "anything/at/all") == {"pull", "push", "delete"}


def test_without_rules_authenticated_users_keep_doing_everything() -> None:
    policy = Policy(open_to_authenticated=True, roles=directory())
    assert policy.allowed(Identity("stranger"), "team/app") == {"pull", "push", "delete"}
    assert policy.allowed(None, "team/app") == frozenset()
    assert policy.allowed(None, "open/app") == {"pull"}


def test_without_a_role_source_nothing_changes() -> None:
    policy = Policy(rules=RULES)
    decision = policy.explain(Identity("dave"), "team/app")
    assert decision.actions == {"pull"} and "project" not in decision.reason
    assert policy.missing_project("team/app") is None


def test_projects_settings() -> None:
    s = load_settings(env={})
    assert (s.projects.default, s.projects.selfservice, s.projects.refresh) == (
        "library",
        False,
        5.0,
    )
    s = load_settings(env={"REGISTRY_PROJECTS_REFRESH": "250ms", "REGISTRY_PROJECTS_DEFAULT": "x"})
    assert s.projects.refresh == 0.25 and s.projects.default == "x"
    for bad in ({"REGISTRY_PROJECTS_DEFAULT": "Team/A"}, {"REGISTRY_PROJECTS_REFRESH": "0s"}):
        with pytest.raises(ConfigError, match=r"projects\."):
            load_settings(env=bad)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    asyncio.run(ensure_schema(url))
    return Database(url, 2)


async def test_store_changes_raise_the_revision(db: Database) -> None:
    try:
        projects = Projects(db, "library")
        start = await db.run_read(store.revision)
        made = await projects.create({"name": "team", "description": "d"}, "olga", "olga")
        assert [(m.kind, m.name, m.role) for m in made.members] == [("user", "olga", "owner")]
        assert await db.run_read(store.revision) == start + 1
        with pytest.raises(ProjectExists):
            await projects.create({"name": "team"}, None, None)
        with pytest.raises(Problems) as bad:
            await projects.create({"name": "Bad/Name", "public": "yes", "x": 1}, None, None)
        assert set(bad.value.problems) == {"name", "public", "x"}
        assert await db.run_read(store.revision) == start + 1  # refusals change nothing
        await projects.put_member("team", "group", "devs", "developer", "olga")
        with pytest.raises(LastOwner):
            await projects.remove_member("team", "user", "olga")
        with pytest.raises(LastOwner):
            await projects.put_member("team", "user", "olga", "guest", "olga")
        await projects.put_member("team", "user", "mary", "owner", "olga")
        assert await projects.remove_member("team", "user", "olga") is True
        assert await projects.remove_member("team", "user", "olga") is False
        assert await projects.remove_member("nope", "user", "olga") is None
        changed = await projects.update("team", {"public": True})
        assert changed is not None and changed.public
        revision, snapshot = await db.run_read(store.load_snapshot)
        team = next(p for p in snapshot if p.name == "team")
        assert {(m.kind, m.name, m.role) for m in team.members} == {
            ("group", "devs", "developer"),
            ("user", "mary", "owner"),
        }
        assert revision == start + 5
        with pytest.raises(Problems):
            await projects.delete("library")
        assert await projects.delete("team") is True
        assert await projects.get("team") is None
    finally:
        await db.close()


async def test_listing_shows_public_and_own_projects(db: Database) -> None:
    try:
        projects = Projects(db, "library")
        await projects.create({"name": "a-private"}, "olga", "olga")
        await projects.create({"name": "b-public", "public": True}, None, None)
        await projects.create({"name": "c-group"}, None, None)
        await projects.put_member("c-group", "group", "devs", "guest", None)
        names = [p.name for p in await projects.page(None, None, "olga")]
        assert names == ["a-private", "b-public"]
        names = [p.name for p in await projects.page(None, None, "x", frozenset({"devs"}))]
        assert names == ["b-public", "c-group"]
        names = [p.name for p in await projects.page(2, "a-private", everything=True)]
        assert names == ["b-public", "c-group"]
    finally:
        await db.close()


async def test_hook_creates_a_missing_project_with_the_write(db: Database) -> None:
    try:
        d = ProjectDirectory("library")
        loader = DirectoryLoader(db, d)
        await loader.load()
        created: list[str] = []
        hook = CreateOnPush(d, created.append)
        request = RequestInfo("r1", "127.0.0.1", "h", "PUT", "ua", actor="dave")
        push = Change("push", "blob", "team/app", "sha256:x", request=request)

        def write_then_fail(conn: object) -> None:
            hook(conn, push)  # type: ignore[arg-type]
            raise RuntimeError("the push failed")

        with pytest.raises(RuntimeError):
            await db.run_write(write_then_fail)
        assert await db.run_read(store.get_project, "team") is None  # rolled back with it
        await db.run_write(hook, push)
        await db.run_write(hook, push)  # again: nothing more
        assert created == ["team", "team"]  # the rolled-back attempt too: its reload finds none
        made = await db.run_read(store.get_project, "team")
        assert made is not None and made.owner == "dave"
        assert [(m.name, m.role) for m in made.members] == [("dave", "owner")]
        assert await loader.refresh() is True
        assert d.role(Identity("dave"), "team") == "owner"
        assert await loader.refresh() is False  # same revision: no reload
        # a top-level repository belongs to the default project; deletes create nothing
        await db.run_write(hook, Change("delete", "manifest", "gone/app", "sha256:x"))
        await db.run_write(hook, Change("push", "manifest", "nginx", "sha256:x"))
        assert await db.run_read(store.get_project, "gone") is None
        top = await db.run_read(store.get_project, "library")
        assert top is not None and top.owner is None and top.members == ()
    finally:
        await db.close()


async def test_a_project_with_repositories_is_not_deleted(db: Database) -> None:
    from registry.meta.records import NewManifest
    from registry.meta.store import MetadataStore

    try:
        meta = MetadataStore(db)
        projects = Projects(db, "library")
        await projects.create({"name": "team_x"}, None, None)
        await projects.create({"name": "teamyx"}, None, None)
        manifest = NewManifest(
            digest="sha256:" + "a" * 64,
            media_type="application/json",
            size=2,
            artifact_type=None,
            subject=None,
            annotations=None,
            blobs=(),
            children=(),
        )
        await meta.put_manifest("teamyx/app", manifest, "v1")
        # "_" is a LIKE wildcard: team_x holds nothing, teamyx does
        assert await projects.delete("team_x") is True
        with pytest.raises(ProjectNotEmpty) as held:
            await projects.delete("teamyx")
        assert held.value.repositories == 1
    finally:
        await db.close()


async def test_settle_rereads_before_trusting_a_missing_project(db: Database) -> None:
    """A project made by another worker since the last reload does not pass for a
    missing one (self-service would otherwise give push into it)."""
    try:
        here = ProjectDirectory("library", selfservice=True)
        loader = DirectoryLoader(db, here)
        await loader.load()
        here.keep_current(loader.refresh)
        policy = Policy(roles=here)
        eve = Identity("eve")
        # a project this copy lacks gives nothing until confirmed missing
        assert policy.allowed(eve, "alices/app") == frozenset()
        await policy.settle(["alices/app"])
        assert policy.allowed(eve, "alices/app") == {"pull", "push"}  # missing: self-service
        # another worker: alice creates the project; this copy has not reloaded yet
        await Projects(db, "library").create({"name": "alices"}, "alice", "alice")
        assert here.missing_project("alices/app") == "alices"
        await policy.settle(["alices/app", "nginx"])
        assert here.missing_project("alices/app") is None
        assert policy.allowed(eve, "alices/app") == frozenset()
        assert policy.allowed(Identity("alice"), "alices/app") == {"pull", "push", "delete"}
    finally:
        await db.close()
