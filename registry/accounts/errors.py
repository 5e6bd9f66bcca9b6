"""The errors of robot accounts and local users.

:class:`RobotNameInvalid` and :class:`RobotExists` are what the store and the use cases
raise (no HTTP in them); ``/api/robots`` answers them as :class:`RobotInvalid` (400) and
:class:`RobotConflict` (409 ``ROBOT_EXISTS``), and an unknown robot as
:class:`RobotUnknown` (404). For local users, :class:`UserFieldsInvalid` and
:class:`UserExists` are answered by ``/api/users`` as :class:`UserInvalid` (400, every
field's problem in ``detail``) and :class:`UserConflict` (409 ``USER_EXISTS``).
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


class UserFieldsInvalid(ValueError):
    """A local user request with fields that cannot be used: ``problems`` maps each
    field to what is wrong with it (all of them, not only the first)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


class UserExists(Exception):
    """A local user with that name exists already."""


class UserInvalid(RegistryError):
    """A local user request that cannot be used (HTTP 400): ``detail`` lists every
    field's problem as ``{"field", "problem"}``."""

    code, status, default_message = "USER_INVALID", 400, "invalid user request"


class UserUnknown(RegistryError):
    """No local user of that name (HTTP 404)."""

    code, status, default_message = "USER_UNKNOWN", 404, "user unknown"


class UserConflict(RegistryError):
    """A local user of that name exists already (HTTP 409)."""

    code, status, default_message = "USER_EXISTS", 409, "user exists already"


class RobotFieldsInvalid(ValueError):
    """A project robot request with fields that cannot be used: ``problems`` maps each
    field (``name``, ``permissions[0].repositories[1]``, ...) to what is wrong with it."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
