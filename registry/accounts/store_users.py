"""The SQL of local users (the ``users`` table of :mod:`registry.accounts.tables`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from registry.accounts.errors import UserExists
from registry.accounts.records import aware
from registry.accounts.tables import users
from registry.accounts.user_records import StoredUser, User


def _user(row: Any) -> User:
    r = row._mapping
    return User(
        name=r["name"],
        email=r["email"] or "",
        admin=bool(r["admin"]),
        disabled=bool(r["disabled"]),
        created_by=r["created_by"],
        created_at=aware(r["created_at"]),
        updated_at=aware(r["updated_at"]),
        password_changed_at=aware(r["password_changed_at"]),
    )


def create_user(
    conn: Connection,
    name: str,
    password_hash: str,
    email: str,
    admin: bool,
    created_by: str | None,
    now: datetime,
) -> User:
    """Insert a user; raises :class:`UserExists`."""
    if conn.execute(select(users.c.id).where(users.c.name == name)).first() is not None:
        raise UserExists(name)
    try:
        conn.execute(
            insert(users).values(
                name=name,
                password_hash=password_hash,
                email=email,
                admin=admin,
                disabled=False,
                created_by=created_by,
                created_at=now,
                updated_at=now,
                password_changed_at=now,
            )
        )
    except IntegrityError:
        raise UserExists(name) from None
    return User(name, email, admin, False, created_by, now, now, now)


def list_users(conn: Connection, limit: int | None, last: str | None) -> list[User]:
    """Users by name, after ``last``, at most ``limit``."""
    query = select(users).order_by(users.c.name)
    if last is not None:
        query = query.where(users.c.name > last)
    if limit is not None:
        query = query.limit(limit)
    return [_user(r) for r in conn.execute(query).all()]


def get_user(conn: Connection, name: str) -> StoredUser | None:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        return None
    return StoredUser(_user(row), row._mapping["password_hash"])


def update_user(conn: Connection, name: str, changes: dict[str, Any], now: datetime) -> User | None:
    """Set ``changes`` (``email``, ``admin``, ``disabled``, ``password_hash``) on the
    user; None if there is none. A new hash also sets ``password_changed_at``."""
    values = {**changes, "updated_at": now}
    if "password_hash" in changes:
        values["password_changed_at"] = now
    done = conn.execute(update(users).where(users.c.name == name).values(**values)).rowcount
    if not done:
        return None
    found = get_user(conn, name)
    return found.user if found is not None else None


def replace_password(
    conn: Connection, name: str, old_hash: str, new_hash: str, now: datetime
) -> bool:
    """Set the hash only if it is still ``old_hash`` (no concurrent reset is undone)."""
    done = conn.execute(
        update(users)
        .where(users.c.name == name, users.c.password_hash == old_hash)
        .values(password_hash=new_hash, updated_at=now, password_changed_at=now)
    ).rowcount
    return bool(done)


def delete_user(conn: Connection, name: str) -> bool:
    """Delete the user; False if there was none."""
    return bool(conn.execute(delete(users).where(users.c.name == name)).rowcount)
