"""Robot accounts scoped to a project (Harbor's project robots): ``robot$PROJECT+NAME``,
with permissions inside the project (actions per repository pattern) and an expiry.

A project robot is no member of its project: it may do exactly what its permissions
give, on the repositories ``PROJECT/PATTERN`` they name, nothing elsewhere, whatever
``auth.policy`` rules or roles say (:class:`auth.policy.Grant`). The secret is shown once,
stored as its SHA-256, as a system robot's (:mod:`registry.accounts.records`).
"""

from __future__ import annotations

import re
from typing import Any

from auth.scopes import DELETE, PULL, PUSH
from registry.accounts import records, store_project_robots
from registry.accounts.errors import RobotFieldsInvalid
from registry.accounts.records import Permission, Robot
from registry.accounts.robots import NewRobot, parse_expiry
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, AdminChange, Trail, traced

ACTIONS = (PULL, PUSH, DELETE)
MAX_PERMISSIONS = 50
MAX_PATTERNS = 100
MAX_FULL_NAME = 100  # the robots.name column
# one component of a pattern: repository name characters and glob characters
_COMPONENT = re.compile(r"[a-z0-9._\-*?\[\]!]+")


def full_name(project: str, name: str) -> str:
    """``robot$PROJECT+NAME`` for ``NAME`` or ``robot$PROJECT+NAME``; ``ValueError``."""
    prefix = f"{records.PREFIX}{project}+"
    short = name[len(prefix) :] if name.startswith(prefix) else name
    if not records.NAME_RE.fullmatch(short):
        raise ValueError(
            "a robot name is 1-63 lowercase letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    full = prefix + short
    if len(full) > MAX_FULL_NAME:
        raise ValueError(f"robot$PROJECT+NAME is longer than {MAX_FULL_NAME} characters")
    return full


def pattern_problem(pattern: object) -> str | None:
    """What is wrong with a repository pattern relative to the project (None: nothing)."""
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty string, a repository name or glob inside the project"
    if len(pattern) > 255:
        return "longer than 255 characters"
    if pattern.startswith("/"):
        return "must be relative to the project (no leading /)"
    for part in pattern.split("/"):
        if part in ("", ".", ".."):
            return "no empty, '.' or '..' path components"
        if not _COMPONENT.fullmatch(part):
            return (
                "lowercase letters, digits, '.', '_', '-', '/' and the globs '*', '?', '[...]' only"
            )
    if pattern.count("[") != pattern.count("]"):
        return "unbalanced '[' ']'"
    return None


def check_permissions(value: object, problems: dict[str, str]) -> tuple[Permission, ...]:
    """The permissions of a request (``[{"repositories": [...], "actions": [...]}]``),
    adding every problem found to ``problems``."""
    if not isinstance(value, list) or not value:
        problems["permissions"] = (
            'must be a non-empty list of {"repositories": [patterns], "actions": [...]}'
        )
        return ()
    if len(value) > MAX_PERMISSIONS:
        problems["permissions"] = f"at most {MAX_PERMISSIONS} permissions"
        return ()
    found: list[Permission] = []
    for i, item in enumerate(value):
        where = f"permissions[{i}]"
        if not isinstance(item, dict):
            problems[where] = 'must be an object {"repositories": [...], "actions": [...]}'
            continue
        for key in sorted(set(item) - {"repositories", "actions"}):
            problems[f"{where}.{str(key)[:40]}"] = "unknown field"
        patterns, actions = item.get("repositories"), item.get("actions")
        ok = True
        if not isinstance(patterns, list) or not patterns or len(patterns) > MAX_PATTERNS:
            problems[f"{where}.repositories"] = (
                f"must be a list of 1-{MAX_PATTERNS} patterns inside the project "
                '("app", "tools/*", "*")'
            )
            ok = False
        else:
            for j, p in enumerate(patterns):
                problem = pattern_problem(p)
                if problem is not None:
                    problems[f"{where}.repositories[{j}]"] = problem
                    ok = False
        if (
            not isinstance(actions, list)
            or not actions
            or not all(isinstance(a, str) and a in ACTIONS for a in actions)
        ):
            problems[f"{where}.actions"] = "must be a non-empty list of pull, push, delete"
            ok = False
        if ok:
            assert isinstance(patterns, list) and isinstance(actions, list)
            kept = tuple(a for a in ACTIONS if a in actions)
            found.append(Permission(tuple(dict.fromkeys(patterns)), kept))
    return tuple(found)


class ProjectRobots:
    """The robots of projects, in the metadata database."""

    def __init__(self, db: Database, trail: Trail = NO_TRAIL) -> None:
        self.db = db
        self.trail = trail  # the audit log: creations, changes and revocations recorded

    async def create(self, project: str, data: dict[str, Any], created_by: str | None) -> NewRobot:
        """From a request's fields (``name``, ``permissions``, ``expires``,
        ``description``); raises :class:`RobotFieldsInvalid` with every field's problem,
        :class:`~registry.accounts.errors.RobotExists` or
        :class:`~registry.accounts.store_project_robots.ProjectGone`."""
        problems: dict[str, str] = {}
        for key in sorted(set(data) - {"name", "permissions", "expires", "description"}):
            problems[str(key)[:40]] = "unknown field"
        name = data.get("name")
        full = ""
        if not isinstance(name, str):
            problems["name"] = "must be a string"
        else:
            try:
                full = full_name(project, name)
            except ValueError as e:
                problems["name"] = str(e)
        permissions = check_permissions(data.get("permissions"), problems)
        expires = data.get("expires")
        expires_at = None
        if expires is not None and not isinstance(expires, str):
            problems["expires"] = "must be a string such as 30d, 12h or never"
        else:
            try:
                expires_at = parse_expiry(expires)
            except ValueError as e:
                problems["expires"] = f"{e}: use 30d, 12h, 90m or never"
        description = data.get("description", "")
        if not isinstance(description, str) or len(description) > 1000:
            problems["description"] = "must be a string of at most 1000 characters"
        if problems:
            raise RobotFieldsInvalid(problems)
        assert isinstance(description, str)
        secret = records.new_secret()
        change = AdminChange(
            "robot.create",
            full,
            project=project,
            details={"name": full, "permissions": permissions, "expires_at": expires_at},
        )
        robot = await self.db.run_write(
            traced(store_project_robots.create_project_robot, self.trail, lambda _: change),
            project,
            full,
            records.hash_secret(secret),
            description,
            permissions,
            expires_at,
            created_by,
        )
        return NewRobot(robot, secret)

    async def all(self, project: str) -> list[Robot]:
        return await self.db.run_read(store_project_robots.list_project_robots, project)

    def _name(self, project: str, name: str) -> str | None:
        try:
            return full_name(project, name)
        except ValueError:
            return None

    async def get(self, project: str, name: str) -> Robot | None:
        full = self._name(project, name)
        if full is None:
            return None
        return await self.db.run_read(store_project_robots.get_project_robot, project, full)

    async def revoke(self, project: str, name: str) -> bool:
        """Delete the robot; False if the project has no such robot."""
        full = self._name(project, name)
        if full is None:
            return False
        change = AdminChange("robot.revoke", full, project=project, details={"name": full})
        return await self.db.run_write(
            traced(
                store_project_robots.delete_project_robot,
                self.trail,
                lambda done: change if done else None,
            ),
            project,
            full,
        )

    async def update(self, project: str, name: str, data: dict[str, Any]) -> Robot | None:
        """Change ``permissions`` and/or ``description``; None if there is no such robot;
        :class:`RobotFieldsInvalid` with every field's problem."""
        problems: dict[str, str] = {}
        for key in sorted(set(data) - {"permissions", "description"}):
            problems[str(key)[:40]] = "unknown field (permissions and description can change)"
        permissions = None
        if "permissions" in data:
            permissions = check_permissions(data["permissions"], problems)
        description = data.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > 1000
        ):
            problems["description"] = "must be a string of at most 1000 characters"
        if problems:
            raise RobotFieldsInvalid(problems)
        full = self._name(project, name)
        if full is None:
            return None
        changed: dict[str, object] = {"name": full}
        if permissions is not None:
            changed["permissions"] = permissions
        if description is not None:
            changed["description"] = description
        change = AdminChange("robot.update", full, project=project, details=changed)
        return await self.db.run_write(
            traced(
                store_project_robots.update_project_robot,
                self.trail,
                lambda found: change if found is not None else None,
            ),
            project,
            full,
            description,
            permissions,
        )
