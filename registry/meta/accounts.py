"""Robot (service) accounts: the ``robots`` table and its SQL.

A robot is named ``robot$NAME`` (as Harbor does: ``$`` cannot appear in an LDAP ``uid``
made by the usual tools nor in most htpasswd user names, so a robot never shadows a
person). Its secret is 32 random bytes (URL-safe base64), shown once at creation; only
its SHA-256 is stored. A salted slow hash (bcrypt) protects low-entropy passwords from
guessing; a 256-bit random secret cannot be guessed, so one SHA-256 is as safe and costs
microseconds per request instead of tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from registry.meta.tables import metadata, name_type

PREFIX = "robot$"
NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})")
GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,127}")

robots = Table(
    "robots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", name_type(100), nullable=False, unique=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("groups", Text, nullable=False, default="[]"),  # JSON list of group names
    Column("created_by", String(255), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)


class RobotNameInvalid(ValueError):
    """A robot name or group that cannot be used."""


class RobotExists(Exception):
    """A robot with that name exists already."""


@dataclass(frozen=True)
class Robot:
    """A robot account (never with its secret)."""

    name: str
    description: str
    groups: tuple[str, ...]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "groups": list(self.groups),
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
            "expired": self.expired(),
        }


def _iso(when: datetime) -> str:
    return _aware(when).isoformat().replace("+00:00", "Z")


def _aware(when: datetime) -> datetime:
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


def _robot(row: object) -> Robot:
    r = row._mapping  # type: ignore[attr-defined]
    return Robot(
        name=r["name"],
        description=r["description"] or "",
        groups=tuple(json.loads(r["groups"] or "[]")),
        created_by=r["created_by"],
        created_at=_aware(r["created_at"]),
        expires_at=_aware(r["expires_at"]) if r["expires_at"] else None,
    )


def create_robot(
    conn: Connection,
    name: str,
    secret_sha256: str,
    description: str,
    groups: tuple[str, ...],
    expires_at: datetime | None,
    created_by: str | None,
) -> Robot:
    """Insert a robot; raises :class:`RobotExists`."""
    now = datetime.now(UTC)
    if conn.execute(select(robots.c.id).where(robots.c.name == name)).first() is not None:
        raise RobotExists(name)
    try:
        conn.execute(
            insert(robots).values(
                name=name,
                secret_sha256=secret_sha256,
                description=description,
                groups=json.dumps(list(groups)),
                created_by=created_by,
                created_at=now,
                expires_at=expires_at,
            )
        )
    except IntegrityError:
        raise RobotExists(name) from None
    return Robot(name, description, groups, created_by, now, expires_at)


def list_robots(conn: Connection) -> list[Robot]:
    rows = conn.execute(select(robots).order_by(robots.c.name)).all()
    return [_robot(r) for r in rows]


def get_robot(conn: Connection, name: str) -> Robot | None:
    row = conn.execute(select(robots).where(robots.c.name == name)).first()
    return _robot(row) if row is not None else None


def delete_robot(conn: Connection, name: str) -> bool:
    """Revoke (delete) a robot; False if there was none."""
    return bool(conn.execute(delete(robots).where(robots.c.name == name)).rowcount)


def check_robot(conn: Connection, name: str, secret: str) -> Robot | None:
    """The robot if ``secret`` is its secret and it has not expired."""
    row = conn.execute(select(robots).where(robots.c.name == name)).first()
    given = hash_secret(secret)
    if row is None:
        hmac.compare_digest(given, "0" * 64)  # same work whether or not the robot exists
        return None
    if not hmac.compare_digest(given, row._mapping["secret_sha256"]):
        return None
    robot = _robot(row)
    return None if robot.expired() else robot
