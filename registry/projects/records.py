"""What the projects store returns: projects and members, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from registry.config import PROJECT_NAME_RE
from registry.projects.errors import ProjectNameInvalid

MAX_NAME = 255


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def check_project_name(name: object) -> str:
    """``name`` if it can name a project (one component of a repository name)."""
    if not isinstance(name, str) or not name:
        raise ProjectNameInvalid("name must be a non-empty string")
    if len(name) > MAX_NAME or not PROJECT_NAME_RE.fullmatch(name):
        raise ProjectNameInvalid(
            "name must be one component of a repository name: lowercase letters and "
            "digits, separated by '.', '_', '__' or '-' (e.g. team-a)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Member:
    kind: str  # "user" or "group"
    name: str
    role: str
    added_by: str | None = None
    added_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "role": self.role,
            "added_by": self.added_by,
            "added_at": self.added_at.isoformat() if self.added_at else None,
        }


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    public: bool
    description: str
    owner: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    members: tuple[Member, ...] = field(default=())

    def as_json(self, members: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "public": self.public,
            "description": self.description,
            "owner": self.owner,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
        if members:
            body["members"] = [m.as_json() for m in self.members]
        return body
