"""The SQL of projects (the tables of :mod:`registry.projects.tables`).

Every function that changes a project or a member raises ``project_revision`` in the
same transaction (and only when it changed something). Member changes lock their
project's row first (``FOR UPDATE`` on PostgreSQL; SQLite has one writer), so a check
such as "the last owner" sees every committed change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from registry.meta.queries import insert_ignore
from registry.meta.tables import manifests, repositories
from registry.projects.errors import LastOwner, ProjectExists, ProjectNotEmpty
from registry.projects.records import Member, Project, aware
from registry.projects.roles import OWNER
from registry.projects.tables import project_members, project_revision, projects

Snapshot = tuple[int, list[Project]]


def _now() -> datetime:
    return datetime.now(UTC)


def bump(conn: Connection) -> None:
    """Raise the revision (every node reloads its copy when it sees it change)."""
    done = conn.execute(
        update(project_revision)
        .where(project_revision.c.id == 1)
        .values(revision=project_revision.c.revision + 1)
    ).rowcount
    if not done:  # a store made without the migration's row
        conn.execute(insert(project_revision).values(id=1, revision=2))


def revision(conn: Connection) -> int:
    found = conn.execute(select(project_revision.c.revision).where(project_revision.c.id == 1))
    return int(found.scalar() or 0)


def _member(row: Any) -> Member:
    r = row._mapping
    return Member(r["kind"], r["name"], r["role"], r["added_by"], aware(r["added_at"]))


def _project(row: Any, members: Iterable[Member] = ()) -> Project:
    r = row._mapping
    return Project(
        id=r["id"],
        name=r["name"],
        public=bool(r["public"]),
        description=r["description"] or "",
        owner=r["owner"],
        created_by=r["created_by"],
        created_at=aware(r["created_at"]),
        updated_at=aware(r["updated_at"]),
        members=tuple(members),
    )


def _members_of(conn: Connection, project_id: int) -> list[Member]:
    rows = conn.execute(
        select(project_members)
        .where(project_members.c.project_id == project_id)
        .order_by(project_members.c.kind, project_members.c.name)
    ).all()
    return [_member(r) for r in rows]


def load_snapshot(conn: Connection) -> Snapshot:
    """The revision and every project with its members (what each worker keeps)."""
    rev = revision(conn)
    by_id: dict[int, list[Member]] = {}
    for row in conn.execute(select(project_members)).all():
        by_id.setdefault(row._mapping["project_id"], []).append(_member(row))
    rows = conn.execute(select(projects).order_by(projects.c.name)).all()
    return rev, [_project(r, by_id.get(r._mapping["id"], ())) for r in rows]


def get_project(conn: Connection, name: str) -> Project | None:
    row = conn.execute(select(projects).where(projects.c.name == name)).first()
    return _project(row, _members_of(conn, row._mapping["id"])) if row is not None else None


def list_projects(
    conn: Connection,
    limit: int | None,
    last: str | None,
    user: str | None = None,
    groups: Iterable[str] = (),
    everything: bool = False,
) -> list[Project]:
    """Projects by name after ``last``: all of them with ``everything``, else the public
    ones and those ``user`` or one of ``groups`` is a member of."""
    query = select(projects).order_by(projects.c.name)
    if last is not None:
        query = query.where(projects.c.name > last)
    if not everything:
        member = [and_(project_members.c.kind == "group", project_members.c.name.in_(groups))]
        if user is not None:
            member.append(and_(project_members.c.kind == "user", project_members.c.name == user))
        mine = exists().where(project_members.c.project_id == projects.c.id, or_(*member))
        query = query.where(or_(projects.c.public.is_(True), mine))
    if limit is not None:
        query = query.limit(limit)
    return [_project(r) for r in conn.execute(query).all()]


def _insert_member(
    conn: Connection,
    project_id: int,
    kind: str,
    name: str,
    role: str,
    added_by: str | None,
    now: datetime,
) -> None:
    row = {"project_id": project_id, "kind": kind, "name": name, "role": role}
    conn.execute(insert(project_members).values(**row, added_by=added_by, added_at=now))


def create_project(
    conn: Connection,
    name: str,
    public: bool,
    description: str,
    owner: str | None,
    created_by: str | None,
) -> Project:
    """Insert a project (``owner``, if any, also as an owner member); raises
    :class:`ProjectExists`."""
    if conn.execute(select(projects.c.id).where(projects.c.name == name)).first() is not None:
        raise ProjectExists(name)
    now = _now()
    try:
        conn.execute(
            insert(projects).values(
                name=name,
                public=public,
                description=description,
                owner=owner,
                quota_bytes=None,
                created_by=created_by,
                created_at=now,
                updated_at=now,
            )
        )
    except IntegrityError:
        raise ProjectExists(name) from None
    project_id = conn.execute(select(projects.c.id).where(projects.c.name == name)).scalar_one()
    if owner is not None:
        _insert_member(conn, project_id, "user", owner, OWNER, created_by, now)
    bump(conn)
    found = get_project(conn, name)
    assert found is not None
    return found


def ensure_project(conn: Connection, name: str, owner: str | None, created_by: str) -> bool:
    """Create project ``name`` unless it exists (``INSERT .. ON CONFLICT DO NOTHING``),
    with ``owner`` as an owner member; True if this call created it."""
    now = _now()
    row = {
        "name": name,
        "public": False,
        "description": "",
        "owner": owner,
        "quota_bytes": None,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
    }
    if not conn.execute(insert_ignore(projects, conn.dialect.name), [row]).rowcount:
        return False
    if owner is not None:
        project_id = conn.execute(select(projects.c.id).where(projects.c.name == name)).scalar_one()
        member = {
            "project_id": project_id,
            "kind": "user",
            "name": owner,
            "role": OWNER,
            "added_by": created_by,
            "added_at": now,
        }
        conn.execute(insert_ignore(project_members, conn.dialect.name), [member])
    bump(conn)
    return True


def update_project(
    conn: Connection, name: str, public: bool | None, description: str | None
) -> Project | None:
    """Change a project's ``public`` and ``description`` (None: unchanged)."""
    values: dict[str, Any] = {"updated_at": _now()}
    if public is not None:
        values["public"] = public
    if description is not None:
        values["description"] = description
    if not conn.execute(update(projects).where(projects.c.name == name).values(**values)).rowcount:
        return None
    bump(conn)
    return get_project(conn, name)


def _inside(name: str, default: str) -> Any:
    inside = repositories.c.name.startswith(f"{name}/", autoescape=True)
    if name == default:
        inside = or_(inside, ~repositories.c.name.contains("/"))
    return inside


def manifests_in(conn: Connection, name: str, default: str) -> list[tuple[str, str]]:
    """(repository, digest) of every manifest in project ``name``."""
    query = (
        select(repositories.c.name, manifests.c.digest)
        .join(manifests, manifests.c.repository_id == repositories.c.id)
        .where(_inside(name, default))
        .order_by(repositories.c.name, manifests.c.id.desc())
    )
    return [(r.name, r.digest) for r in conn.execute(query).all()]


def repositories_in(conn: Connection, name: str, default: str) -> int:
    """How many repositories of project ``name`` hold a manifest (``default``: the
    project of names without a slash)."""
    inside = _inside(name, default)
    held = exists().where(manifests.c.repository_id == repositories.c.id)
    count = conn.execute(select(func.count()).select_from(repositories).where(inside, held))
    return int(count.scalar() or 0)


def delete_project(conn: Connection, name: str, default: str) -> bool:
    """Delete a project and its members; raises :class:`ProjectNotEmpty` while it holds
    repositories; False if there was none."""
    project_id = _project_id(conn, name)
    if project_id is None:
        return False
    held = repositories_in(conn, name, default)
    if held:
        raise ProjectNotEmpty(name, held)
    conn.execute(delete(project_members).where(project_members.c.project_id == project_id))
    conn.execute(delete(projects).where(projects.c.id == project_id))
    bump(conn)
    return True


def _project_id(conn: Connection, name: str) -> int | None:
    """The project's id, its row locked until the transaction ends (PostgreSQL)."""
    query = select(projects.c.id).where(projects.c.name == name).with_for_update()
    found = conn.execute(query).scalar()
    return int(found) if found is not None else None


def _owners(conn: Connection, project_id: int) -> int:
    count = conn.execute(
        select(func.count())
        .select_from(project_members)
        .where(project_members.c.project_id == project_id, project_members.c.role == OWNER)
    )
    return int(count.scalar() or 0)


def put_member(
    conn: Connection, project: str, kind: str, name: str, role: str, added_by: str | None
) -> tuple[Member, bool] | None:
    """Add a member or change its role: (the member, True if added); None without such
    a project; raises :class:`LastOwner` for demoting the last owner."""
    project_id = _project_id(conn, project)
    if project_id is None:
        return None
    key = and_(
        project_members.c.project_id == project_id,
        project_members.c.kind == kind,
        project_members.c.name == name,
    )
    old = conn.execute(select(project_members).where(key)).first()
    if old is None:
        now = _now()
        _insert_member(conn, project_id, kind, name, role, added_by, now)
        bump(conn)
        return Member(kind, name, role, added_by, now), True
    if old._mapping["role"] == OWNER and role != OWNER and _owners(conn, project_id) <= 1:
        raise LastOwner(project)
    conn.execute(update(project_members).where(key).values(role=role))
    bump(conn)
    kept = _member(old)
    return Member(kind, name, role, kept.added_by, kept.added_at), False


def remove_member(conn: Connection, project: str, kind: str, name: str) -> bool | None:
    """Remove a member: True if removed, False if it was none, None without such a
    project; raises :class:`LastOwner` for the last owner."""
    project_id = _project_id(conn, project)
    if project_id is None:
        return None
    key = and_(
        project_members.c.project_id == project_id,
        project_members.c.kind == kind,
        project_members.c.name == name,
    )
    old = conn.execute(select(project_members.c.role).where(key)).first()
    if old is None:
        return False
    if old.role == OWNER and _owners(conn, project_id) <= 1:
        raise LastOwner(project)
    conn.execute(delete(project_members).where(key))
    bump(conn)
    return True


def list_members(conn: Connection, project: str) -> list[Member] | None:
    found = conn.execute(select(projects.c.id).where(projects.c.name == project)).scalar()
    project_id = int(found) if found is not None else None
    return None if project_id is None else _members_of(conn, project_id)
