"""The use cases of projects, shared by ``/api/projects`` and ``wharf project``: checked
input, one transaction each, and the local directory reloaded after every change."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from registry.errors import ManifestUnknown as ManifestGone
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, AdminChange, Trail, traced
from registry.projects import store
from registry.projects.errors import ProjectNameInvalid
from registry.projects.records import Member, Project, check_project_name
from registry.projects.roles import check_kind, check_role

MAX_DESCRIPTION = 4096
MAX_MEMBER = 255
CREATE_FIELDS = frozenset({"name", "public", "description"})
UPDATE_FIELDS = frozenset({"public", "description"})

Reload = Callable[[], Awaitable[None]]
# the core's manifest delete (ManifestService.delete: hooks, events, GC as any delete)
DeleteManifest = Callable[[str, str], Awaitable[None]]


async def _nothing() -> None:
    return None


class Problems(ValueError):
    """Every field's problem with a request: ``{field: message}``."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


def _check(problems: dict[str, str]) -> None:
    if problems:
        raise Problems(problems)


def check_fields(
    data: dict[str, Any], allowed: frozenset[str], required: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Problems of unknown and missing fields."""
    problems = {k: "unknown field" for k in data if k not in allowed}
    problems.update({k: "required" for k in required if k not in data})
    return problems


def check_member_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_MEMBER:
        raise ValueError(f"name must be a non-empty string of at most {MAX_MEMBER} characters")
    if any(c.isspace() or c == "/" for c in name):
        raise ValueError("name must not hold spaces or slashes")
    return name


class Projects:
    """Projects and members in the database; ``reload`` refreshes this worker's copy."""

    def __init__(
        self,
        db: Database,
        default: str,
        reload: Reload = _nothing,
        delete_manifest: DeleteManifest | None = None,
        trail: Trail = NO_TRAIL,
    ) -> None:
        self.db = db
        self.trail = trail  # the audit log: every change recorded in its transaction
        self.default = default
        self.reload = reload
        self.delete_manifest = delete_manifest

    async def create(
        self, data: dict[str, Any], owner: str | None, created_by: str | None
    ) -> Project:
        """``{name, public, description}``; raises :class:`Problems`, ``ProjectExists``."""
        problems = check_fields(data, CREATE_FIELDS, frozenset({"name"}))
        name = data.get("name")
        if "name" in data:
            try:
                check_project_name(name)
            except ProjectNameInvalid as e:
                problems["name"] = str(e)
        public, description = data.get("public", False), data.get("description", "")
        problems.update(_settings_problems(public, description))
        _check(problems)
        assert isinstance(name, str)
        change = AdminChange(
            "project.create",
            name,
            project=name,
            details={"public": bool(public), "description": description, "owner": owner},
        )
        made = await self.db.run_write(
            traced(store.create_project, self.trail, lambda _: change),
            name,
            bool(public),
            description,
            owner,
            created_by,
        )
        await self.reload()
        return made

    async def update(self, name: str, data: dict[str, Any]) -> Project | None:
        """``{public, description}`` (each optional); raises :class:`Problems`."""
        problems = check_fields(data, UPDATE_FIELDS)
        if not data:
            problems["body"] = "give public or description"
        public, description = data.get("public"), data.get("description")
        problems.update(
            _settings_problems(
                False if public is None else public, "" if description is None else description
            )
        )
        _check(problems)
        changed = {
            k: v for k, v in (("public", public), ("description", description)) if v is not None
        }
        change = AdminChange("project.update", name, project=name, details=changed)
        found = await self.db.run_write(
            traced(store.update_project, self.trail, lambda p: change if p else None),
            name,
            public,
            description,
        )
        await self.reload()
        return found

    async def delete(self, name: str, force: bool = False) -> bool:
        """Delete an empty project; raises ``ProjectNotEmpty``, :class:`Problems` for the
        default project. With ``force``, first delete every manifest in it through the
        core service (each delete its own transaction, as a client's; a push landing
        meanwhile makes the project's delete refused again)."""
        if name == self.default:
            raise Problems(
                {"name": f"{name} is the default project (projects.default): it cannot be deleted"}
            )
        if force:
            await self._delete_manifests(name)
        change = AdminChange("project.delete", name, project=name, details={"force": force})
        done = await self.db.run_write(
            traced(store.delete_project, self.trail, lambda d: change if d else None),
            name,
            self.default,
        )
        await self.reload()
        return done

    async def _delete_manifests(self, name: str) -> None:
        if self.delete_manifest is None:
            raise Problems({"force": "not available here: use the API of a running server"})
        if await self.get(name) is None:
            return
        found = await self.db.run_read(store.manifests_in, name, self.default)
        for repository, digest in found:  # newest first: an index before its children
            with contextlib.suppress(ManifestGone):
                await self.delete_manifest(repository, digest)

    async def get(self, name: str) -> Project | None:
        return await self.db.run_read(store.get_project, name)

    async def page(
        self,
        limit: int | None,
        last: str | None,
        user: str | None = None,
        groups: frozenset[str] = frozenset(),
        everything: bool = False,
    ) -> list[Project]:
        return await self.db.run_read(
            store.list_projects, limit, last, user, sorted(groups), everything
        )

    async def members(self, name: str) -> list[Member] | None:
        return await self.db.run_read(store.list_members, name)

    async def put_member(
        self, project: str, kind: object, name: object, role: object, added_by: str | None
    ) -> tuple[Member, bool] | None:
        """Add a member or change its role; raises :class:`Problems`, ``LastOwner``."""
        problems: dict[str, str] = {}
        for key, check, value in (
            ("kind", check_kind, kind),
            ("name", check_member_name, name),
            ("role", check_role, role),
        ):
            try:
                check(value)
            except ValueError as e:
                problems[key] = str(e)
        _check(problems)
        assert isinstance(kind, str) and isinstance(name, str) and isinstance(role, str)

        def member(found: tuple[Member, bool] | None) -> AdminChange | None:
            if found is None:
                return None
            action = "member.add" if found[1] else "member.role"
            details = {"kind": kind, "name": name, "role": role}
            return AdminChange(action, f"{kind}:{name}", project=project, details=details)

        found = await self.db.run_write(
            traced(store.put_member, self.trail, member), project, kind, name, role, added_by
        )
        await self.reload()
        return found

    async def remove_member(self, project: str, kind: str, name: str) -> bool | None:
        """Remove a member; raises :class:`Problems`, ``LastOwner``."""
        try:
            check_kind(kind)
        except ValueError as e:
            raise Problems({"kind": str(e)}) from None
        change = AdminChange(
            "member.remove", f"{kind}:{name}", project=project, details={"kind": kind, "name": name}
        )
        done = await self.db.run_write(
            traced(store.remove_member, self.trail, lambda d: change if d else None),
            project,
            kind,
            name,
        )
        await self.reload()
        return done


def _settings_problems(public: object, description: object) -> dict[str, str]:
    problems: dict[str, str] = {}
    if not isinstance(public, bool):
        problems["public"] = "must be true or false"
    if not isinstance(description, str):
        problems["description"] = "must be a string"
    elif len(description) > MAX_DESCRIPTION:
        problems["description"] = f"at most {MAX_DESCRIPTION} characters"
    return problems
