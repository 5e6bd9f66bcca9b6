"""Robot accounts: create (the secret is returned once), list, revoke, check a login."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from auth.policy import Identity
from registry.accounts import records, robot_grants, store
from registry.accounts.errors import RobotNameInvalid
from registry.accounts.records import Robot
from registry.durations import parse_duration
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, AdminChange, Trail, traced

_DAYS = re.compile(r"(\d+)d(.*)")


def parse_expiry(text: str | None, now: datetime | None = None) -> datetime | None:
    """When a robot made now expires: ``30d``, ``12h``, ``90m``, ``1d12h``; None for
    ``never`` (or nothing). Raises ``ValueError``."""
    if text is None or text.strip().lower() in ("", "never", "0"):
        return None
    value = text.strip()
    seconds = 0.0
    m = _DAYS.fullmatch(value)
    if m:
        seconds, value = int(m.group(1)) * 86400.0, m.group(2)
    if value:
        seconds += parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"invalid expiry {text!r}")
    return (now or datetime.now(UTC)) + timedelta(seconds=seconds)


@dataclass(frozen=True)
class NewRobot:
    """A robot just created, with its secret (shown this once)."""

    robot: Robot
    secret: str


class RobotAccounts:
    """Robot accounts in the metadata database."""

    def __init__(
        self, db: Database, default_project: str = "library", trail: Trail = NO_TRAIL
    ) -> None:
        self.db = db
        self.trail = trail  # the audit log: creations and revocations recorded
        self.default_project = default_project  # which project robots see top-level names

    async def create(
        self,
        name: str,
        description: str = "",
        groups: Iterable[str] = (),
        expires: str | None = None,
        created_by: str | None = None,
    ) -> NewRobot:
        """Raises ``ValueError`` (:class:`RobotNameInvalid` for names) or
        :class:`~registry.accounts.errors.RobotExists`."""
        full = records.full_name(name)
        checked = records.check_groups(list(groups))
        expires_at = parse_expiry(expires)
        if len(description) > 1000:
            raise ValueError("description longer than 1000 characters")
        secret = records.new_secret()
        change = AdminChange(
            "robot.create",
            full,
            details={"name": full, "groups": checked, "expires_at": expires_at},
        )
        robot = await self.db.run_write(
            traced(store.create_robot, self.trail, lambda _: change),
            full,
            records.hash_secret(secret),
            description,
            checked,
            expires_at,
            created_by,
        )
        return NewRobot(robot, secret)

    async def all(self) -> list[Robot]:
        return await self.db.run_read(store.list_robots)

    async def get(self, name: str) -> Robot | None:
        """The robot ``robot$NAME`` (or None)."""
        if not records.is_robot(name):
            return None
        return await self.db.run_read(store.get_robot, name)

    async def revoke(self, name: str) -> bool:
        """Delete the robot; False if there was none (or the name is not a robot's)."""
        try:
            full = records.full_name(name)
        except RobotNameInvalid:
            return False
        change = AdminChange("robot.revoke", full, details={"name": full})
        return await self.db.run_write(
            traced(store.delete_robot, self.trail, lambda done: change if done else None), full
        )

    async def check(self, name: str, secret: str) -> list[str] | Identity | None:
        """If ``secret`` is right and the robot has not expired: a system robot's groups,
        a project robot's identity (its grants); else None."""
        if not records.is_robot(name) or not secret or len(secret) > 200:
            return None
        robot = await self.db.run_read(store.check_robot, name, secret)
        if robot is None:
            return None
        if robot.project is not None:
            return robot_grants.identity(robot, self.default_project)
        return list(robot.groups)
