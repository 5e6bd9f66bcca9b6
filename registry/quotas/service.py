"""The quota use cases of the API and the CLI, each one transaction."""

from __future__ import annotations

from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, AdminChange, Trail, traced
from registry.quotas import store
from registry.quotas.errors import ProjectUnknown


class QuotaService:
    def __init__(self, db: Database, default_project: str, trail: Trail = NO_TRAIL) -> None:
        self.db = db
        self.default = default_project
        self.trail = trail  # the audit log: a quota set is recorded in its transaction

    async def usage(self, project: str) -> store.Usage:
        """A project's usage; :class:`ProjectUnknown` if it has no row and holds nothing."""
        found = await self.db.run_read(store.usage_if_known, project, self.default)
        if found is None:
            raise ProjectUnknown(detail={"project": project[:255]})
        return found

    async def all(self) -> list[store.Usage]:
        return await self.db.run_read(store.usages, self.default)

    async def set_quota(self, project: str, quota: int | None) -> store.Usage:
        """Set or remove a project's quota; :class:`ProjectUnknown` without a project row.
        A quota below the usage is allowed: pushes that add bytes are refused from then on."""
        change = AdminChange("quota.set", project, project=project, details={"bytes": quota})
        found = await self.db.run_write(
            traced(store.set_quota_and_read, self.trail, lambda u: change if u else None),
            project,
            quota,
            self.default,
        )
        if found is None:
            raise ProjectUnknown(detail={"project": project[:255]})
        return found

    async def recount(self) -> dict[str, tuple[int, int]]:
        """Recompute every project's usage from scratch: {project: (before, after)}."""
        return await self.db.run_write(store.recount, self.default)
