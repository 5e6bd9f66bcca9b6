"""The roles of project members and what each may do (Harbor's roles as the reference).

=========== ==== ==== ====================== ================= =========
role        pull push delete manifests, tags manage members    settings
=========== ==== ==== ====================== ================= =========
guest       yes  no   no                     no                no
developer   yes  yes  no                     no                no
maintainer  yes  yes  yes                    no                no
owner       yes  yes  yes                    yes               yes
=========== ==== ==== ====================== ================= =========

A repository action (``pull``, ``push``, ``delete``) is what ``/v2/`` and the token
service check; ``members`` and ``settings`` are what ``/api/projects`` checks.
"""

from __future__ import annotations

from auth.scopes import DELETE, PULL, PUSH

GUEST, DEVELOPER, MAINTAINER, OWNER = "guest", "developer", "maintainer", "owner"
ROLES = (GUEST, DEVELOPER, MAINTAINER, OWNER)  # lowest first
RANK = {role: i for i, role in enumerate(ROLES)}
KINDS = ("user", "group")

MEMBERS, SETTINGS = "members", "settings"  # project actions beyond the repository ones

REPOSITORY_ACTIONS: dict[str, frozenset[str]] = {
    GUEST: frozenset({PULL}),
    DEVELOPER: frozenset({PULL, PUSH}),
    MAINTAINER: frozenset({PULL, PUSH, DELETE}),
    OWNER: frozenset({PULL, PUSH, DELETE}),
}
PROJECT_ACTIONS: dict[str, frozenset[str]] = {
    GUEST: frozenset(),
    DEVELOPER: frozenset(),
    MAINTAINER: frozenset(),
    OWNER: frozenset({MEMBERS, SETTINGS}),
}


def highest(roles: list[str]) -> str | None:
    """The highest of ``roles`` (None for none)."""
    return max(roles, key=RANK.__getitem__) if roles else None


def check_role(role: object) -> str:
    """``role`` if it is one; :class:`ValueError` naming the roles otherwise."""
    if not isinstance(role, str) or role not in RANK:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError("kind must be user or group")
    return kind
