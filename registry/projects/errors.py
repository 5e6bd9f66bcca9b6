"""The errors of projects.

:class:`ProjectExists`, :class:`ProjectNotEmpty`, :class:`LastOwner` and
:class:`ProjectNameInvalid` are what the store and use cases raise (no HTTP in them);
``/api/projects`` answers them with the OCI-format errors below.
"""

from __future__ import annotations

from registry.errors import RegistryError


class ProjectNameInvalid(ValueError):
    """A project name that is not one component of a repository name."""


class ProjectExists(Exception):
    """A project of that name exists already."""


class ProjectNotEmpty(Exception):
    """A project that still holds repositories (``repositories``: how many)."""

    def __init__(self, name: str, repositories: int) -> None:
        super().__init__(name)
        self.name, self.repositories = name, repositories


class LastOwner(Exception):
    """The change would leave a project that has owners without any."""


class ProjectInvalid(RegistryError):
    """A project or member request that cannot be used (HTTP 400); ``detail`` lists
    every field's problem."""

    code, status, default_message = "PROJECT_INVALID", 400, "invalid project request"


class ProjectUnknown(RegistryError):
    code, status, default_message = "PROJECT_UNKNOWN", 404, "project unknown"


class MemberUnknown(RegistryError):
    code, status, default_message = "MEMBER_UNKNOWN", 404, "project member unknown"


class ProjectConflict(RegistryError):
    """A project of that name exists already (HTTP 409)."""

    code, status, default_message = "PROJECT_EXISTS", 409, "project exists already"


class ProjectNotEmptyError(RegistryError):
    """A project that still holds repositories cannot be deleted (HTTP 409)."""

    code, status, default_message = "PROJECT_NOT_EMPTY", 409, "project holds repositories"


class LastOwnerError(RegistryError):
    """The last owner of a project cannot be removed or demoted (HTTP 409)."""

    code, status, default_message = "LAST_OWNER", 409, "a project keeps at least one owner"
