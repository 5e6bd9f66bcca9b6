"""Docker token scopes: ``repository:team/app:pull,push``, ``registry:catalog:*``.

A scope names a resource type (optionally with a class, ``repository(plugin)``), a
resource name (which may itself hold colons, e.g. a host:port) and a comma-separated
list of actions. Several scopes may be given space-separated in one string.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PULL, PUSH, DELETE, ALL = "pull", "push", "delete", "*"
REPOSITORY_ACTIONS = frozenset({PULL, PUSH, DELETE})
CATALOG = ("registry", "catalog")


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource and the actions asked for (or granted) on it."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def claim(self) -> dict[str, Any]:
        """This scope as an entry of a token's ``access`` claim."""
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def repository(name: str, *actions: str) -> ResourceScope:
    return ResourceScope("repository", name, frozenset(actions))


def catalog() -> ResourceScope:
    return ResourceScope(CATALOG[0], CATALOG[1], frozenset({ALL}))


def parse_scope(text: str) -> ResourceScope | None:
    """One ``type:name:actions`` scope; None if malformed (malformed scopes are ignored)."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    kind = kind.split("(", 1)[0]  # "repository(plugin)" is a repository
    wanted = frozenset(a.strip() for a in actions.split(",") if a.strip())
    if not wanted:
        return None
    return ResourceScope(kind, name, wanted)


def parse_scopes(values: Iterable[str]) -> list[ResourceScope]:
    """Every scope in ``values`` (each may hold several, space-separated), merged per resource."""
    merged: dict[tuple[str, str], set[str]] = {}
    for value in values:
        for part in value.split():
            scope = parse_scope(part)
            if scope is not None:
                merged.setdefault((scope.type, scope.name), set()).update(scope.actions)
    return [ResourceScope(t, n, frozenset(a)) for (t, n), a in merged.items()]


def from_claim(access: Any) -> list[ResourceScope]:
    """The scopes of a token's ``access`` claim (malformed entries are skipped)."""
    scopes: list[ResourceScope] = []
    if not isinstance(access, list):
        return scopes
    for entry in access:
        if not isinstance(entry, dict):
            continue
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
        if isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list):
            scopes.append(
                ResourceScope(kind, name, frozenset(a for a in actions if isinstance(a, str)))
            )
    return scopes


class AccessSet:
    """What a token grants: (type, name) -> actions, with ``*`` meaning every action."""

    def __init__(self, scopes: Iterable[ResourceScope] = ()) -> None:
        self._grants: dict[tuple[str, str], set[str]] = {}
        for scope in scopes:
            self._grants.setdefault((scope.type, scope.name), set()).update(scope.actions)

    def allows(self, kind: str, name: str, action: str) -> bool:
        actions = self._grants.get((kind, name), set())
        return action in actions or ALL in actions

    def allows_all(self, scope: ResourceScope) -> bool:
        return all(self.allows(scope.type, scope.name, a) for a in scope.actions)

    def repositories(self, action: str) -> set[str]:
        """Repository names on which ``action`` is granted."""
        return {
            name
            for (kind, name), actions in self._grants.items()
            if kind == "repository" and (action in actions or ALL in actions)
        }
