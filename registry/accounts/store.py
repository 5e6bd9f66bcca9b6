"""The SQL of robot accounts (the ``robots`` table of :mod:`registry.accounts.tables`)."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from registry.accounts.errors import RobotExists
from registry.accounts.records import Permission, Robot, aware, hash_secret
from registry.accounts.tables import robots


def robot_of(row: object) -> Robot:
    """The record of a ``robots`` row (a project robot's project from its name,
    ``robot$PROJECT+NAME``: a project name has no ``+``)."""
    r = row._mapping  # type: ignore[attr-defined]
    project = None
    if r["project_id"] is not None:
        project = r["name"][len("robot$") :].partition("+")[0]
    permissions = tuple(
        Permission(tuple(p["repositories"]), tuple(p["actions"]))
        for p in json.loads(r["permissions"] or "[]")
    )
    return Robot(
        name=r["name"],
        description=r["description"] or "",
        groups=tuple(json.loads(r["groups"] or "[]")),
        created_by=r["created_by"],
        created_at=aware(r["created_at"]),
        expires_at=aware(r["expires_at"]) if r["expires_at"] else None,
        project=project,
        permissions=permissions,
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
    """The system robots (a project's robots are listed with its project)."""
    query = select(robots).where(robots.c.project_id.is_(None)).order_by(robots.c.name)
    rows = conn.execute(query).all()
    return [robot_of(r) for r in rows]


def get_robot(conn: Connection, name: str) -> Robot | None:
    """A robot by its full name (a system or a project robot)."""
    row = conn.execute(select(robots).where(robots.c.name == name)).first()
    return robot_of(row) if row is not None else None


def delete_robot(conn: Connection, name: str) -> bool:
    """Revoke (delete) a system robot; False if there was none."""
    query = delete(robots).where(robots.c.name == name, robots.c.project_id.is_(None))
    return bool(conn.execute(query).rowcount)


def check_robot(conn: Connection, name: str, secret: str) -> Robot | None:
    """The robot if ``secret`` is its secret and it has not expired."""
    row = conn.execute(select(robots).where(robots.c.name == name)).first()
    given = hash_secret(secret)
    if row is None:
        hmac.compare_digest(given, "0" * 64)  # same work whether or not the robot exists
        return None
    if not hmac.compare_digest(given, row._mapping["secret_sha256"]):
        return None
    robot = robot_of(row)
    return None if robot.expired() else robot
