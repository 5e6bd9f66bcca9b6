"""The quota feature's error: a push refused because it would exceed a project's quota."""

from __future__ import annotations

from registry.errors import Denied, NameUnknown, RegistryError
from registry.sizes import format_size


class QuotaExceeded(Denied):
    """DENIED (403): the spec has no quota code, and DENIED is what clients show as the
    reason (``denied: ...``); a 4xx a client does not retry, unlike 5xx or 429."""

    def __init__(self, project: str, quota: int, usage: int, adding: int) -> None:
        super().__init__(
            f"quota exceeded: project {project} uses {usage} of its {quota} byte quota "
            f"({format_size(usage)} of {format_size(quota)}); this push adds {adding} bytes",
            detail={"project": project, "quota": quota, "usage": usage, "adding": adding},
        )
        self.project = project
        self.quota = quota
        self.usage = usage
        self.adding = adding


class QuotaInvalid(RegistryError):
    """A quota given to ``PUT /api/projects/NAME/quota`` that cannot be used (HTTP 400)."""

    code, status, default_message = "QUOTA_INVALID", 400, "invalid quota"


class ProjectUnknown(NameUnknown):
    """No project of that name (NAME_UNKNOWN, HTTP 404)."""

    default_message = "project unknown"
