"""The errors of robot accounts.

:class:`RobotNameInvalid` and :class:`RobotExists` are what the store and the use cases
raise (no HTTP in them); ``/api/robots`` answers them as :class:`RobotInvalid` (400) and
:class:`RobotConflict` (409 ``ROBOT_EXISTS``), and an unknown robot as
:class:`RobotUnknown` (404).
"""

from __future__ import annotations

from registry.errors import RegistryError


class RobotNameInvalid(ValueError):
    """A robot name or group that cannot be used."""


class RobotExists(Exception):
    """A robot with that name exists already."""


class RobotInvalid(RegistryError):
    """A robot account request that cannot be used: name, groups, expiry (HTTP 400)."""

    code, status, default_message = "ROBOT_INVALID", 400, "invalid robot account request"


class RobotUnknown(RegistryError):
    """No robot account of that name (HTTP 404)."""

    code, status, default_message = "ROBOT_UNKNOWN", 404, "robot account unknown"


class RobotConflict(RegistryError):
    """A robot account of that name exists already (HTTP 409): :class:`RobotExists`
    as ``/api/robots`` answers it."""

    code, status, default_message = "ROBOT_EXISTS", 409, "robot account exists already"
