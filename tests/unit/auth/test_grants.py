"""A project robot's grants in the policy: exactly its actions on the repositories of its
project that its patterns name, nothing elsewhere, whatever rules, roles or admins say."""

from __future__ import annotations

import asyncio

from auth.logins import Logins
from auth.policy import Decision, Grant, Identity, Policy, Rule, Subjects
from auth.throttle import LoginThrottle

ROBOT = Identity(
    "robot$team+ci",
    grants=(
        Grant("team", ("app",), frozenset({"pull", "push"})),
        Grant("team", ("*",), frozenset({"pull"})),
    ),
)


class EveryoneOwns:
    """Roles that give every caller everything everywhere (a robot must not get them)."""

    def explain(self, who: Identity | None, repository: str) -> Decision | None:
        return Decision(frozenset({"pull", "push", "delete"}), "owner everywhere")

    def missing_project(self, repository: str) -> str | None:
        return None

    async def settle(self, repository: str) -> None:
        return None


def test_the_grants_decide_inside_the_project() -> None:
    policy = Policy()
    assert policy.allowed(ROBOT, "team/app") == {"pull", "push"}
    assert policy.allowed(ROBOT, "team/other") == {"pull"}
    assert policy.allowed(ROBOT, "team/tools/lint") == {"pull"}  # * crosses slashes
    assert policy.allowed(ROBOT, "team/app/sub") == {"pull"}  # only through *
    assert "team/app" in policy.explain(ROBOT, "team/app").reason


def test_nothing_outside_the_project() -> None:
    for name in ("other/app", "teams/app", "team", "app", "team-b/app"):
        assert Policy().allowed(ROBOT, name) == frozenset(), name


def test_rules_roles_and_admins_add_nothing() -> None:
    policy = Policy(
        rules=[
            Rule(("*",), frozenset({"*"}), authenticated=True),
            Rule(("*",), frozenset({"*"}), users=frozenset({"robot$team+ci"})),
        ],
        admins=Subjects(users=frozenset({"robot$team+ci"})),
        catalog_readers=Subjects(users=frozenset({"robot$team+ci"})),
        roles=EveryoneOwns(),
    )
    assert policy.allowed(ROBOT, "team/app") == {"pull", "push"}
    assert policy.allowed(ROBOT, "team/other") == {"pull"}
    assert policy.allowed(ROBOT, "other/app") == frozenset()
    assert not policy.is_admin(ROBOT)
    assert not policy.may_list_catalog(ROBOT)
    # the open policy (no auth.policy: every authenticated user may do all) neither
    open_policy = Policy(open_to_authenticated=True)
    assert open_policy.allowed(ROBOT, "other/app") == frozenset()
    assert not open_policy.may_list_catalog(ROBOT)
    # while an ordinary user of the same policy gets what the rules give
    assert policy.allowed(Identity("alice"), "other/app") == {"pull", "push", "delete"}


def test_no_grants_may_nothing() -> None:
    nobody = Identity("robot$team+gone", grants=())
    assert Policy(open_to_authenticated=True).allowed(nobody, "team/app") == frozenset()


def test_patterns_are_globs_relative_to_the_project() -> None:
    grant = Grant("team", ("tools/*", "app-[ab]", "svc?"), frozenset({"pull"}))
    assert grant.matches("team/tools/lint")
    assert not grant.matches("team/tools")
    assert grant.matches("team/app-a") and not grant.matches("team/app-c")
    assert grant.matches("team/svc1") and not grant.matches("team/svc12")
    assert not grant.matches("other/tools/lint")


def test_the_default_project_holds_top_level_names() -> None:
    grant = Grant("library", ("*",), frozenset({"pull"}), toplevel=True)
    assert grant.matches("nginx") and grant.matches("library/nginx")
    assert not grant.matches("team/app")  # a top-level * never crosses into a project
    assert not Grant("team", ("*",), frozenset({"pull"})).matches("nginx")


def test_a_project_robot_logs_in_with_its_grants_and_keeps_them_by_name() -> None:
    """Token mode names a caller by the token's subject only: a project robot is its
    identity at its last login, else one that may nothing (never a user's rules)."""
    logins = Logins(Policy(open_to_authenticated=True), LoginThrottle())

    async def robots(name: str, secret: str) -> list[str] | Identity | None:
        if (name, secret) == ("robot$team+ci", "s3cret"):
            return ROBOT
        return ["builders"] if (name, secret) == ("robot$ci", "s3cret") else None

    logins.robots = robots
    before = logins.identity("robot$team+ci")
    assert before.grants == () and logins.policy.allowed(before, "team/app") == frozenset()
    found = asyncio.run(logins.login("robot$team+ci", "s3cret", "A"))
    assert found is not None and found.source == "robot" and found.identity == ROBOT
    assert logins.identity("robot$team+ci") == ROBOT
    system = asyncio.run(logins.login("robot$ci", "s3cret", "A"))  # a system robot: groups
    assert system is not None and system.identity.groups == {"builders"}
    assert system.identity.grants is None
    assert logins.identity("robot$ci").grants is None
