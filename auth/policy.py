"""Access policies: who may pull, push or delete in which repositories.

A :class:`Policy` is a list of :class:`Rule` s. Each rule names repositories by glob
(``team-a/*``, ``*``, ``library/nginx``; ``*`` matches across slashes), the subjects it
applies to (users, groups, any authenticated user, anonymous callers) and the actions it
gives. For a caller and a repository, **the most specific matching rule wins**, and its
actions are the whole answer (a specific rule with fewer actions narrows a broad one):

1. the more specific repository pattern (an exact name, then more literal characters);
2. then the more specific subject (a user, then a group, then any authenticated user,
   then anonymous).

Rules tied on both count together (their actions are added). Administrators may do
everything, everywhere, including ``registry:catalog:*``. :meth:`Policy.explain` says
which rule decided and why.

A policy may also be given a :class:`RoleSource` (the projects' roles and public
projects, answered from memory): the actions it gives are **added** to those of the
rules. A rule never takes away what a role gives.

A caller whose :class:`Identity` carries ``grants`` (a robot account scoped to a project)
is decided by its grants alone: exactly their actions on the repositories they name,
nothing elsewhere, whatever rules, roles, public projects or ``admins`` say.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from auth.scopes import ALL, REPOSITORY_ACTIONS

# subject ranks: higher is more specific
ANONYMOUS, AUTHENTICATED, GROUP, USER = 0, 1, 2, 3
_SUBJECT_NAMES = {
    ANONYMOUS: "anonymous",
    AUTHENTICATED: "authenticated",
    GROUP: "group",
    USER: "user",
}


@dataclass(frozen=True, slots=True)
class Grant:
    """Actions on some repositories of one project (a project robot's permission):
    ``patterns`` are globs relative to the project (``app``, ``tools/*``, ``*``; ``*``
    matches across slashes). ``toplevel``: the project is the default one, which also
    holds the names without a slash (``nginx``)."""

    project: str
    patterns: tuple[str, ...]
    actions: frozenset[str]
    toplevel: bool = False

    def matches(self, repository: str) -> bool:
        if repository.startswith(self.project + "/"):
            rest = repository[len(self.project) + 1 :]
        elif self.toplevel and "/" not in repository:
            rest = repository
        else:
            return False
        return any(_glob(p).fullmatch(rest) for p in self.patterns)

    def describe(self) -> str:
        where = ", ".join(f"{self.project}/{p}" for p in self.patterns)
        return f"{where} -> {','.join(sorted(self.actions)) or 'nothing'}"


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller who logged in: a user name, the groups it belongs to, and whether its
    source made it a system administrator (a local user with the ``admin`` flag).

    ``grants`` (None for every ordinary caller) makes it a scoped caller, a robot
    account of a project: it may do exactly what the grants give (see :class:`Grant`),
    never more through rules, roles or ``admins``."""

    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False
    grants: tuple[Grant, ...] | None = None


@dataclass(frozen=True, slots=True)
class Subjects:
    """A set of callers: named users and members of named groups."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def contains(self, who: Identity | None) -> bool:
        return who is not None and (who.name in self.users or bool(who.groups & self.groups))


@dataclass(frozen=True, slots=True)
class Rule:
    """Actions given to some subjects on the repositories matching some globs."""

    repositories: tuple[str, ...]
    actions: frozenset[str]
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    authenticated: bool = False
    anonymous: bool = False
    index: int = 0  # position in the configuration, for explanations

    def __post_init__(self) -> None:
        unknown = self.actions - REPOSITORY_ACTIONS - {ALL}
        if unknown:
            raise ValueError(f"unknown action(s) {', '.join(sorted(unknown))}")
        if self.anonymous and self.actions - {"pull"}:
            raise ValueError("anonymous callers may only be given pull")
        if not (self.users or self.groups or self.authenticated or self.anonymous):
            raise ValueError("a rule needs users, groups, authenticated or anonymous")

    def subject_rank(self, who: Identity | None) -> int | None:
        """How specifically this rule names ``who`` (None: it does not apply)."""
        if who is not None:
            if who.name in self.users:
                return USER
            if who.groups & self.groups:
                return GROUP
            if self.authenticated:
                return AUTHENTICATED
        if self.anonymous:
            return ANONYMOUS
        return None

    def describe(self) -> str:
        who = [f"user {u}" for u in sorted(self.users)]
        who += [f"group {g}" for g in sorted(self.groups)]
        if self.authenticated:
            who.append("any authenticated user")
        if self.anonymous:
            who.append("anonymous")
        actions = ",".join(sorted(self.actions)) or "nothing"
        where = " / ".join(self.repositories)
        return f"rule #{self.index + 1}: {where} -> {actions} for {', '.join(who)}"


def pattern_specificity(pattern: str, name: str) -> tuple[int, int] | None:
    """How specifically a glob matches ``name`` (None if it does not): exact names first,
    then more literal (non-wildcard) characters."""
    if pattern == name:
        return (1, len(pattern))
    if not _glob(pattern).fullmatch(name):
        return None
    literal = len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern))
    return (0, literal)


_GLOBS: dict[str, re.Pattern[str]] = {}


def _glob(pattern: str) -> re.Pattern[str]:
    compiled = _GLOBS.get(pattern)
    if compiled is None:
        compiled = _GLOBS[pattern] = re.compile(fnmatch.translate(pattern))
    return compiled


@dataclass(frozen=True, slots=True)
class Decision:
    """The actions a caller has on a repository, and why."""

    actions: frozenset[str]
    reason: str
    rules: tuple[Rule, ...] = ()

    def allows(self, action: str) -> bool:
        return ALL in self.actions or action in self.actions

    @property
    def expanded(self) -> frozenset[str]:
        """The actions with ``*`` spelt out."""
        return REPOSITORY_ACTIONS if ALL in self.actions else self.actions


class RoleSource(Protocol):
    """What callers may do through roles (projects): answered from memory, never from
    a database read per request."""

    def explain(self, who: Identity | None, repository: str) -> Decision | None:
        """The actions ``who`` has on ``repository`` through roles and why (empty
        actions with a reason for "nothing"); None when roles say nothing there."""
        ...

    def missing_project(self, repository: str) -> str | None:
        """The name of ``repository``'s project if that project does not exist."""
        ...

    async def settle(self, repository: str) -> None:
        """Before deciding on a repository whose project the memory lacks: make sure it
        is missing (one small read; the copy reloads if another worker changed it)."""
        ...


@dataclass
class Policy:
    """Rules, administrators, catalog readers and (static) group membership."""

    rules: list[Rule] = field(default_factory=list)
    admins: Subjects = Subjects()
    catalog_readers: Subjects = Subjects()
    groups: Mapping[str, Iterable[str]] = field(default_factory=dict)
    # With no rules at all, every authenticated user may do everything (as the reference
    # registry's htpasswd mode); set False to deny everything instead.
    open_to_authenticated: bool = False
    # the projects' roles (added to what the rules give); None: rules only
    roles: RoleSource | None = None

    def identity(self, name: str, extra_groups: Iterable[str] = ()) -> Identity:
        """The identity of user ``name``: its configured groups plus ``extra_groups``."""
        groups = {g for g, members in self.groups.items() if name in members}
        return Identity(name, frozenset(groups | set(extra_groups)))

    def is_admin(self, who: Identity | None) -> bool:
        if who is None or who.grants is not None:
            return False
        return who.admin or self.admins.contains(who)

    def may_list_catalog(self, who: Identity | None) -> bool:
        """``registry:catalog:*``: the full catalog, not only pullable repositories."""
        if who is not None and who.grants is not None:
            return False  # a project robot's catalog shows what it may pull
        if self.is_admin(who) or self.catalog_readers.contains(who):
            return True
        return who is not None and self.open_to_authenticated

    def explain(self, who: Identity | None, repository: str) -> Decision:
        """The actions ``who`` (None: anonymous) has on ``repository``, and the reason:
        an administrator's everything, else the rules' actions plus the roles'; for a
        scoped caller (a project robot), its grants alone."""
        if who is not None and who.grants is not None:
            return _explain_grants(who, who.grants, repository)
        decision = self._explain_rules(who, repository)
        if self.roles is None or ALL in decision.actions:
            return decision
        role = self.roles.explain(who, repository)
        if role is None:
            return decision
        actions = decision.actions | role.actions
        return Decision(actions, f"{decision.reason}; {role.reason}", decision.rules)

    def missing_project(self, repository: str) -> str | None:
        """The project of ``repository`` if the roles know it does not exist."""
        return self.roles.missing_project(repository) if self.roles is not None else None

    async def settle(self, repositories: Iterable[str]) -> None:
        """Bring the roles up to date for ``repositories`` whose project the memory
        lacks (a project just made elsewhere must not pass for a missing one)."""
        if self.roles is not None:
            for repository in repositories:
                await self.roles.settle(repository)

    def _explain_rules(self, who: Identity | None, repository: str) -> Decision:
        if self.is_admin(who):
            assert who is not None
            return Decision(frozenset({ALL}), f"{who.name} is an administrator")
        if who is not None and self.open_to_authenticated:
            return Decision(frozenset({ALL}), "no policy: every authenticated user may do all")
        best: tuple[tuple[int, int], int] | None = None
        winners: list[Rule] = []
        for rule in self.rules:
            rank = rule.subject_rank(who)
            if rank is None:
                continue
            spec = max(
                (s for p in rule.repositories if (s := pattern_specificity(p, repository))),
                default=None,
            )
            if spec is None:
                continue
            key = (spec, rank)
            if best is None or key > best:
                best, winners = key, [rule]
            elif key == best:
                winners.append(rule)
        if best is None:
            who_text = who.name if who else "anonymous"
            return Decision(frozenset(), f"no rule gives {who_text} access to {repository}")
        actions = frozenset().union(*(r.actions for r in winners))
        subject = _SUBJECT_NAMES[best[1]]
        reason = "; ".join(r.describe() for r in winners) + f" (most specific, as {subject})"
        return Decision(frozenset(actions), reason, tuple(winners))

    def allowed(self, who: Identity | None, repository: str) -> frozenset[str]:
        """The actions (``*`` spelt out) ``who`` has on ``repository``."""
        return self.explain(who, repository).expanded


def _explain_grants(who: Identity, grants: tuple[Grant, ...], repository: str) -> Decision:
    """A scoped caller's actions: the union of its grants that match ``repository``."""
    matching = [g for g in grants if g.matches(repository)]
    if not matching:
        reason = f"{who.name} is scoped to its permissions, none of which names {repository}"
        return Decision(frozenset(), reason)
    actions = frozenset().union(*(g.actions for g in matching))
    reason = f"{who.name} is scoped to its permissions: " + "; ".join(
        g.describe() for g in matching
    )
    return Decision(frozenset(actions), reason)
