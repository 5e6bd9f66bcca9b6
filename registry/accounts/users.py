"""Local users (``auth.local``): create, list, read, change, delete, change one's own
password. Passwords are checked against the rules of :mod:`registry.accounts.passwords`
and hashed with bcrypt in a worker thread; every change is one transaction, and the
login cache of this worker forgets the user at once (``on_change``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from registry.accounts import store_users as store
from registry.accounts.errors import UserFieldsInvalid
from registry.accounts.passwords import COST, hash_off_loop, password_problem, verify_off_loop
from registry.accounts.user_records import User, email_problem, name_problem
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, AdminChange, Trail, traced

# a name -> why it cannot be a local user's (None: it can): the htpasswd file's names
Reserved = Callable[[str], str | None]
Clock = Callable[[], datetime]


def _nothing_reserved(_name: str) -> str | None:
    return None


def _now() -> datetime:
    return datetime.now(UTC)


class UserAccounts:
    """Local users in the metadata database."""

    def __init__(
        self,
        db: Database,
        min_password_length: int = 8,
        reserved: Reserved = _nothing_reserved,
        on_change: Callable[[str], None] | None = None,
        cost: int = COST,
        clock: Clock = _now,
        trail: Trail = NO_TRAIL,
    ) -> None:
        self.db = db
        self.trail = trail  # the audit log: every change recorded (never a password)
        self.min_password_length = min_password_length
        self.reserved = reserved
        self.on_change = on_change
        self.cost = cost
        self.clock = clock

    def _changed(self, name: str) -> None:
        if self.on_change is not None:
            self.on_change(name)

    async def create(
        self,
        name: object,
        password: object,
        email: object = "",
        admin: object = False,
        created_by: str | None = None,
    ) -> User:
        """Raises :class:`UserFieldsInvalid` (every field's problem) or
        :class:`~registry.accounts.errors.UserExists`."""
        problems: dict[str, str] = {}
        problem = name_problem(name)
        if problem is None and isinstance(name, str):
            problem = self.reserved(name)
        if problem is not None:
            problems["name"] = problem
        if (problem := password_problem(password, self.min_password_length)) is not None:
            problems["password"] = problem
        if (problem := email_problem(email)) is not None:
            problems["email"] = problem
        if not isinstance(admin, bool):
            problems["admin"] = "must be true or false"
        if problems:
            raise UserFieldsInvalid(problems)
        assert isinstance(name, str) and isinstance(password, str)
        assert isinstance(email, str) and isinstance(admin, bool)
        hashed = await hash_off_loop(password, self.cost)
        change = AdminChange("user.create", f"user:{name}", details={"name": name, "admin": admin})
        user = await self.db.run_write(
            traced(store.create_user, self.trail, lambda _: change),
            name,
            hashed,
            email,
            admin,
            created_by,
            self.clock(),
        )
        self._changed(name)
        return user

    async def page(self, limit: int | None = None, last: str | None = None) -> list[User]:
        return await self.db.run_read(store.list_users, limit, last)

    async def get(self, name: str) -> User | None:
        found = await self.db.run_read(store.get_user, name)
        return found.user if found is not None else None

    async def update(self, name: str, fields: dict[str, Any]) -> User | None:
        """Change ``disabled``, ``admin``, ``email`` and/or ``password`` (a reset);
        None if there is no such user. Raises :class:`UserFieldsInvalid` (every field's
        problem, unknown fields included) and changes nothing then."""
        problems: dict[str, str] = {}
        changes: dict[str, Any] = {}
        for key, value in fields.items():
            if key in ("disabled", "admin"):
                if isinstance(value, bool):
                    changes[key] = value
                else:
                    problems[key] = "must be true or false"
            elif key == "email":
                if (problem := email_problem(value)) is None:
                    changes[key] = value
                else:
                    problems[key] = problem
            elif key == "password":
                if (problem := password_problem(value, self.min_password_length)) is not None:
                    problems[key] = problem
            else:
                problems[key] = "unknown field (disabled, admin, email or password)"
        if not fields:
            problems["body"] = "nothing to change: give disabled, admin, email or password"
        if problems:
            raise UserFieldsInvalid(problems)
        if "password" in fields:
            changes["password_hash"] = await hash_off_loop(fields["password"], self.cost)
        shown: dict[str, object] = {k: v for k, v in changes.items() if k != "password_hash"}
        if "password" in fields:
            shown["password"] = "reset"
        if changes.get("disabled") is True:
            action = "user.disable"
        elif changes.get("disabled") is False:
            action = "user.enable"
        elif "password" in fields:
            action = "user.password.reset"
        else:
            action = "user.update"
        change = AdminChange(action, f"user:{name}", details={"name": name, **shown})
        user = await self.db.run_write(
            traced(store.update_user, self.trail, lambda u: change if u is not None else None),
            name,
            changes,
            self.clock(),
        )
        self._changed(name)
        return user

    async def delete(self, name: str) -> bool:
        change = AdminChange("user.delete", f"user:{name}", details={"name": name})
        done = await self.db.run_write(
            traced(store.delete_user, self.trail, lambda d: change if d else None), name
        )
        self._changed(name)
        return done

    async def change_password(self, name: str, old: object, new: object) -> bool:
        """The user's own change: False if ``old`` is not the current password (or the
        user is gone or disabled). Raises :class:`UserFieldsInvalid`."""
        problems: dict[str, str] = {}
        if not isinstance(old, str) or not old:
            problems["old_password"] = "is required (a string)"
        if (problem := password_problem(new, self.min_password_length)) is not None:
            problems["new_password"] = problem
        elif new == old:
            problems["new_password"] = "must differ from the old password"
        if problems:
            raise UserFieldsInvalid(problems)
        assert isinstance(old, str) and isinstance(new, str)
        found = await self.db.run_read(store.get_user, name)
        if found is None or found.user.disabled:
            return False
        if not await verify_off_loop(old, found.password_hash):
            return False
        hashed = await hash_off_loop(new, self.cost)
        change = AdminChange("user.password", f"user:{name}", details={"name": name})
        done = await self.db.run_write(
            traced(store.replace_password, self.trail, lambda d: change if d else None),
            name,
            found.password_hash,
            hashed,
            self.clock(),
        )
        self._changed(name)
        return done
