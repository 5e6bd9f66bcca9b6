"""The immutability feature's errors (OCI format)."""

from __future__ import annotations

from registry.errors import Denied, RegistryError
from registry.immutability.rules import Rule


class TagImmutable(Denied):
    """DENIED (403): a push that would move, or a delete that would remove, a tag an
    immutability rule holds. The spec has no code of its own for it; DENIED is what
    clients show as the reason and do not retry."""

    def __init__(self, what: str, project: str, repository: str, tag: str, rule: Rule) -> None:
        super().__init__(
            f"{what} refused: tag {repository}:{tag} is immutable by {rule.describe()} "
            f"of project {project}",
            detail={
                "project": project,
                "repository": repository,
                "tag": tag,
                "rule": rule.brief(),
            },
        )
        self.rule = rule


class ImmutableRuleInvalid(RegistryError):
    """A rule given to ``POST /api/projects/NAME/immutable`` that cannot be used (HTTP 400);
    ``detail`` names every field's problem."""

    code, status, default_message = "IMMUTABLE_RULE_INVALID", 400, "invalid immutability rule"


class ImmutableRuleExists(RegistryError):
    """The project has a rule with the same two patterns (HTTP 409)."""

    code, status, default_message = "IMMUTABLE_RULE_EXISTS", 409, "immutability rule exists"


class ImmutableRuleUnknown(RegistryError):
    """No rule of that id in the project (HTTP 404)."""

    code, status, default_message = "IMMUTABLE_RULE_UNKNOWN", 404, "immutability rule unknown"


class ProjectUnknown(RegistryError):
    """No project of that name (HTTP 404; the projects API's code for it)."""

    code, status, default_message = "PROJECT_UNKNOWN", 404, "project unknown"
