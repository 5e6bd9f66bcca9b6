"""The SQL of project robots: rows of the ``robots`` table with a ``project_id``.

The project is found by name in the projects feature's table (a declared seam: a
project robot belongs to a project row, and goes with it, ON DELETE CASCADE).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from registry.accounts.errors import RobotExists
from registry.accounts.records import Permission, Robot
from registry.accounts.store import robot_of
from registry.accounts.tables import robots
from registry.projects.tables import projects


class ProjectGone(LookupError):
    """The robot's project does not exist (deleted meanwhile)."""


def _project_id(conn: Connection, project: str) -> int:
    found = conn.execute(select(projects.c.id).where(projects.c.name == project)).scalar()
    if found is None:
        raise ProjectGone(project)
    return int(found)


def _permissions(permissions: tuple[Permission, ...]) -> str:
    return json.dumps([p.as_json() for p in permissions])


def create_project_robot(
    conn: Connection,
    project: str,
    name: str,
    secret_sha256: str,
    description: str,
    permissions: tuple[Permission, ...],
    expires_at: datetime | None,
    created_by: str | None,
) -> Robot:
    """Insert robot ``name`` (``robot$PROJECT+NAME``) of ``project``; raises
    :class:`RobotExists` or :class:`ProjectGone`."""
    project_id = _project_id(conn, project)
    if conn.execute(select(robots.c.id).where(robots.c.name == name)).first() is not None:
        raise RobotExists(name)
    now = datetime.now(UTC)
    try:
        conn.execute(
            insert(robots).values(
                name=name,
                secret_sha256=secret_sha256,
                description=description,
                groups="[]",
                created_by=created_by,
                created_at=now,
                expires_at=expires_at,
                project_id=project_id,
                permissions=_permissions(permissions),
            )
        )
    except IntegrityError:
        raise RobotExists(name) from None
    return Robot(name, description, (), created_by, now, expires_at, project, permissions)


def list_project_robots(conn: Connection, project: str) -> list[Robot]:
    """The robots of ``project`` by name (none if there is no such project)."""
    query = (
        select(robots)
        .join(projects, projects.c.id == robots.c.project_id)
        .where(projects.c.name == project)
        .order_by(robots.c.name)
    )
    return [robot_of(r) for r in conn.execute(query).all()]


def get_project_robot(conn: Connection, project: str, name: str) -> Robot | None:
    query = (
        select(robots)
        .join(projects, projects.c.id == robots.c.project_id)
        .where(projects.c.name == project, robots.c.name == name)
    )
    row = conn.execute(query).first()
    return robot_of(row) if row is not None else None


def _in_project(project: str) -> ColumnElement[bool]:
    return robots.c.project_id.in_(select(projects.c.id).where(projects.c.name == project))


def delete_project_robot(conn: Connection, project: str, name: str) -> bool:
    """Revoke (delete) robot ``name`` of ``project``; False if there was none."""
    query = delete(robots).where(robots.c.name == name, _in_project(project))
    return bool(conn.execute(query).rowcount)


def update_project_robot(
    conn: Connection,
    project: str,
    name: str,
    description: str | None,
    permissions: tuple[Permission, ...] | None,
) -> Robot | None:
    """Change a project robot's description and/or permissions; None if there is none."""
    values: dict[str, str] = {}
    if description is not None:
        values["description"] = description
    if permissions is not None:
        values["permissions"] = _permissions(permissions)
    if values:
        conn.execute(update(robots).where(robots.c.name == name, _in_project(project)), values)
    return get_project_robot(conn, project, name)
