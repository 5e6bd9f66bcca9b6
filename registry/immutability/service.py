"""The rule use cases of the API and the CLI, each one transaction (with its trail record)."""

from __future__ import annotations

from registry.immutability import store
from registry.immutability.errors import ImmutableRuleExists, ImmutableRuleUnknown, ProjectUnknown
from registry.immutability.rules import Rule
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, Trail


def _unknown(project: str) -> ProjectUnknown:
    return ProjectUnknown(
        f"project {project[:100]} does not exist", detail={"project": project[:255]}
    )


class ImmutabilityService:
    def __init__(self, db: Database, trail: Trail = NO_TRAIL) -> None:
        self.db = db
        self.trail = trail

    async def rules(self, project: str) -> list[Rule]:
        found = await self.db.run_read(store.list_rules, project)
        if found is None:
            raise _unknown(project)
        return found

    async def add(self, project: str, repository: str, tag: str, by: str | None) -> Rule:
        """Add a rule (its patterns checked by the caller: ``rules.check_rule``)."""
        made = await self.db.run_write(store.add_rule, project, repository, tag, by, self.trail)
        if made == "project":
            raise _unknown(project)
        if made == "exists":
            raise ImmutableRuleExists(
                f"project {project} has a rule for repository {repository}, tag {tag} already",
                detail={"project": project, "repository": repository, "tag": tag},
            )
        assert isinstance(made, Rule)
        return made

    async def remove(self, project: str, rule_id: int, by: str | None) -> Rule:
        found = await self.db.run_write(store.remove_rule, project, rule_id, by, self.trail)
        if found == "project":
            raise _unknown(project)
        if found is None:
            raise ImmutableRuleUnknown(
                f"project {project} has no immutability rule {rule_id}",
                detail={"project": project, "id": rule_id},
            )
        assert isinstance(found, Rule)
        return found
