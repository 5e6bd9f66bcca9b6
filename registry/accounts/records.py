"""A robot (service) account: its record, the rules for its name and groups, its secret.

A robot is named ``robot$NAME`` (as Harbor does: ``$`` cannot appear in an LDAP ``uid``
made by the usual tools nor in most htpasswd user names, so a robot never shadows a
person). Its secret is 32 random bytes (URL-safe base64), shown once at creation; only
its SHA-256 is stored. A salted slow hash (bcrypt) protects low-entropy passwords from
guessing; a 256-bit random secret cannot be guessed, so one SHA-256 is as safe and costs
microseconds per request instead of tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from registry.accounts.errors import RobotNameInvalid

PREFIX = "robot$"
NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})")
GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,127}")


@dataclass(frozen=True)
class Permission:
    """What a project robot may do: ``actions`` on the repositories of its project
    matching ``repositories`` (globs relative to the project)."""

    repositories: tuple[str, ...]
    actions: tuple[str, ...]

    def as_json(self) -> dict[str, object]:
        return {"repositories": list(self.repositories), "actions": list(self.actions)}


@dataclass(frozen=True)
class Robot:
    """A robot account (never with its secret): a system robot (``project`` None, with
    groups for ``auth.policy``) or a project robot (``robot$PROJECT+NAME``, with
    permissions inside its project)."""

    name: str
    description: str
    groups: tuple[str, ...]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    project: str | None = None
    permissions: tuple[Permission, ...] = ()

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def as_json(self) -> dict[str, object]:
        found: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "groups": list(self.groups),
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
            "expired": self.expired(),
        }
        if self.project is not None:
            del found["groups"]
            found["project"] = self.project
            found["permissions"] = [p.as_json() for p in self.permissions]
        return found


def _iso(when: datetime) -> str:
    return aware(when).isoformat().replace("+00:00", "Z")


def aware(when: datetime) -> datetime:
    """SQLite gives back naive datetimes: they were stored in UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def full_name(name: str) -> str:
    """``robot$ci`` for ``ci`` or ``robot$ci``; raises :class:`RobotNameInvalid`."""
    short = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if not NAME_RE.fullmatch(short):
        raise RobotNameInvalid(
            "a robot name is 1-63 lowercase letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return PREFIX + short


def is_robot(user: str) -> bool:
    return user.startswith(PREFIX)


def check_groups(groups: list[str]) -> tuple[str, ...]:
    for g in groups:
        if not isinstance(g, str) or not GROUP_RE.fullmatch(g):
            raise RobotNameInvalid(f"invalid group name {str(g)[:60]!r}")
    return tuple(sorted(set(groups)))


def new_secret() -> str:
    """32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
