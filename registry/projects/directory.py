"""The in-memory copy of the projects that every worker keeps, and the roles it answers.

:class:`ProjectDirectory` is the :class:`~auth.policy.RoleSource` of the policy: for a
caller and a repository it finds the project (the first path component, or
``projects.default`` for a name without a slash), the caller's role there (the highest
of its user membership and its groups' memberships) and whether the project is public,
with dictionary look-ups only. It is made empty before the database is open and filled
(:meth:`replace`) by :mod:`registry.projects.setup`, which keeps it current.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from auth.policy import Decision, Identity
from auth.scopes import PULL, PUSH
from registry.content.names import project_of
from registry.projects.records import Project
from registry.projects.roles import OWNER, RANK, REPOSITORY_ACTIONS

NOTHING: frozenset[str] = frozenset()
PULL_ONLY = frozenset({PULL})
SELF_SERVICE = frozenset({PULL, PUSH})
MAX_CONFIRMED = 10_000  # names confirmed missing kept at once (probes of made-up names)


@dataclass(frozen=True, slots=True)
class Entry:
    """One project as the directory keeps it."""

    name: str
    public: bool
    users: Mapping[str, str]  # user -> role
    groups: Mapping[str, str]  # group -> role

    @classmethod
    def of(cls, project: Project) -> Entry:
        users = {m.name: m.role for m in project.members if m.kind == "user"}
        groups = {m.name: m.role for m in project.members if m.kind == "group"}
        return cls(project.name, project.public, users, groups)

    def role(self, who: Identity | None) -> tuple[str, str] | None:
        """(the highest role of ``who`` here, how it has it), or None. A project robot
        (an identity with grants) has no role anywhere, even if named as a member."""
        if who is None or who.grants is not None:
            return None
        best: tuple[str, str] | None = None
        role = self.users.get(who.name)
        if role is not None:
            best = (role, f"user {who.name}")
        if self.groups:
            for group in who.groups:
                role = self.groups.get(group)
                if role is not None and (best is None or RANK[role] > RANK[best[0]]):
                    best = (role, f"group {group}")
        return best


class ProjectDirectory:
    """Every project with its members, swapped whole on each reload."""

    def __init__(self, default: str = "library", selfservice: bool = False) -> None:
        self.default = default
        self.selfservice = selfservice
        self.revision = -1  # not loaded yet
        self._projects: dict[str, Entry] = {}
        self._refresh: Callable[[], Awaitable[object]] | None = None
        self._settling: asyncio.Future[object] | None = None
        # projects found missing by settle() at the current revision: only these give
        # self-service rights (a name this copy merely lacks may be stale)
        self._confirmed: set[str] = set()

    def keep_current(self, refresh: Callable[[], Awaitable[object]]) -> None:
        """How :meth:`settle` reloads (the setup's loader, once the database is open)."""
        self._refresh = refresh

    def project_of(self, repository: str) -> str:
        """The project ``repository`` belongs to."""
        return project_of(repository, self.default)

    def replace(self, revision: int, projects: Iterable[Project]) -> None:
        """Take a snapshot read from the database (one assignment: readers see the old
        copy or the new one, never a mix)."""
        self._projects = {p.name: Entry.of(p) for p in projects}
        self._confirmed -= self._projects.keys()
        self.revision = revision

    def get(self, name: str) -> Entry | None:
        return self._projects.get(name)

    def exists(self, name: str) -> bool:
        return name in self._projects

    def __len__(self) -> int:
        return len(self._projects)

    def role(self, who: Identity | None, project: str) -> str | None:
        """The role of ``who`` in ``project`` (None: none, or no such project)."""
        entry = self._projects.get(project)
        found = entry.role(who) if entry is not None else None
        return found[0] if found is not None else None

    def owned_by(self, who: Identity | None) -> frozenset[str]:
        """The projects where ``who`` is an owner (as a user or through a group)."""
        found = (e.role(who) for e in self._projects.values())
        names = self._projects.keys()
        return frozenset(n for n, r in zip(names, found, strict=True) if r and r[0] == OWNER)

    def explain(self, who: Identity | None, repository: str) -> Decision:
        """What ``who`` may do on ``repository`` through its project, and why. A missing
        project gives self-service rights only once :meth:`settle` confirmed it missing."""
        name = self.project_of(repository)
        entry = self._projects.get(name)
        if entry is None:
            confirmed = self._refresh is None or name in self._confirmed  # None: a fixed copy
            if self.selfservice and who is not None and confirmed:
                reason = (
                    f"project {name} does not exist: with projects.selfservice a push creates it"
                )
                return Decision(SELF_SERVICE, reason)
            return Decision(NOTHING, f"project {name} does not exist")
        found = entry.role(who)
        if found is None:
            if entry.public:
                return Decision(PULL_ONLY, f"project {name} is public")
            return Decision(NOTHING, f"no role in private project {name}")
        role, via = found
        reason = f"role {role} in project {name} (as {via})"
        if entry.public:
            reason += f"; project {name} is public"
        return Decision(REPOSITORY_ACTIONS[role], reason)

    def missing_project(self, repository: str) -> str | None:
        name = self.project_of(repository)
        return None if name in self._projects else name

    async def settle(self, repository: str) -> None:
        """A project this copy lacks may have been made on another worker since the last
        reload: read the revision (reloading if it moved) before a decision relies on
        "missing" (self-service push, the refusal's message). Callers at the same time
        share one read; a project the copy has costs nothing."""
        name = self.project_of(repository)
        if self._refresh is None or name in self._projects:
            return
        if self._settling is None or self._settling.done():
            self._settling = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._settling)
        if name not in self._projects:
            if len(self._confirmed) >= MAX_CONFIRMED:
                self._confirmed.clear()
            self._confirmed.add(name)
