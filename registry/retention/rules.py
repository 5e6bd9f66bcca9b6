"""Retention rules: what each keeps, read from JSON with every field's problem named.

A rule selects repositories of its project by globs relative to the project
(``app``, ``tools/*``; ``*`` also matches ``/``) and tags by globs or ``re:<regex>``
(the patterns of replication rules, ``replicator/rules.py``), and keeps some of the
selected tags by its ``kind``:

- ``latest_pushed`` (``count`` N): the N most recently pushed
- ``latest_pulled`` (``count`` N): the N most recently pulled (of those ever pulled)
- ``pushed_within`` (``days`` D): those pushed in the last D days
- ``pulled_within`` (``days`` D): those pulled in the last D days
- ``always``: all of them

``untagged``: ``keep`` or ``drop`` the manifests of a selected repository that have no
tag and are neither a child of an index nor a referrer of a manifest there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

KINDS = ("latest_pushed", "latest_pulled", "pushed_within", "pulled_within", "always")
COUNTED = ("latest_pushed", "latest_pulled")
PERIODS = ("pushed_within", "pulled_within")
UNTAGGED = ("keep", "drop")
MAX_PATTERNS = 100
MAX_PATTERN = 255
MAX_COUNT = 1_000_000
MAX_DAYS = 36_500.0
MAX_RULES = 50
FIELDS = {
    "repositories",
    "exclude_repositories",
    "tags",
    "exclude_tags",
    "kind",
    "count",
    "days",
    "untagged",
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule (``id`` None before it is stored)."""

    kind: str
    repositories: tuple[str, ...] = ("*",)
    exclude_repositories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ("*",)
    exclude_tags: tuple[str, ...] = ()
    count: int | None = None
    days: float | None = None
    untagged: str = "keep"
    id: int | None = None

    def selects_repository(self, relative: str) -> bool:
        """Does this rule apply to the repository ``relative`` (its name inside the project)?"""
        return any(fnmatchcase(relative, p) for p in self.repositories) and not any(
            fnmatchcase(relative, p) for p in self.exclude_repositories
        )

    def selects_tag(self, tag: str) -> bool:
        return any(_tag_match(p, tag) for p in self.tags) and not any(
            _tag_match(p, tag) for p in self.exclude_tags
        )

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "id": self.id,
            "repositories": list(self.repositories),
            "exclude_repositories": list(self.exclude_repositories),
            "tags": list(self.tags),
            "exclude_tags": list(self.exclude_tags),
            "kind": self.kind,
            "untagged": self.untagged,
        }
        if self.kind in COUNTED:
            found["count"] = self.count
        if self.kind in PERIODS:
            found["days"] = self.days
        return found


_REGEX: dict[str, re.Pattern[str]] = {}


def _tag_match(pattern: str, tag: str) -> bool:
    if pattern.startswith("re:"):
        compiled = _REGEX.get(pattern)
        if compiled is None:
            compiled = _REGEX[pattern] = re.compile(pattern[3:])
        return compiled.fullmatch(tag) is not None
    return fnmatchcase(tag, pattern)


def _patterns(
    data: Mapping[str, Any], name: str, default: tuple[str, ...], problems: dict[str, str]
) -> tuple[str, ...]:
    if name not in data or data[name] is None:
        return default
    value = data[name]
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        problems[name] = f"must be a list of at most {MAX_PATTERNS} patterns"
        return default
    found: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_PATTERN:
            problems[name] = f"every pattern must be a string of 1 to {MAX_PATTERN} characters"
            return default
        if item.startswith("re:"):
            try:
                re.compile(item[3:])
            except re.error as e:
                problems[name] = f"{item!r}: invalid regular expression ({e})"
                return default
        found.append(item)
    return tuple(found)


def rule_from_json(data: Any) -> tuple[Rule | None, dict[str, str]]:
    """The rule ``data`` describes, or None with the problem of each field."""
    problems: dict[str, str] = {}
    if not isinstance(data, dict):
        return None, {"rule": "must be a JSON object"}
    for unknown in sorted(set(data) - FIELDS - {"id"}):
        problems[unknown] = "unknown field"
    kind = data.get("kind")
    if kind not in KINDS:
        problems["kind"] = f"must be one of {', '.join(KINDS)}"
    repositories = _patterns(data, "repositories", ("*",), problems)
    exclude_repositories = _patterns(data, "exclude_repositories", (), problems)
    tags = _patterns(data, "tags", ("*",), problems)
    exclude_tags = _patterns(data, "exclude_tags", (), problems)
    if "repositories" in data and not repositories:
        problems["repositories"] = "must name at least one pattern"
    if "tags" in data and not tags:
        problems["tags"] = 'must name at least one pattern ("*": every tag)'
    count = data.get("count")
    days = data.get("days")
    if kind in COUNTED:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            problems["count"] = f"{kind} needs a whole number count from 0 to {MAX_COUNT}"
    elif count is not None:
        problems["count"] = f"only {' and '.join(COUNTED)} take a count"
    if kind in PERIODS:
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_DAYS:
            problems["days"] = f"{kind} needs a number of days above 0, at most {MAX_DAYS:g}"
    elif days is not None:
        problems["days"] = f"only {' and '.join(PERIODS)} take days"
    untagged = data.get("untagged", "keep")
    if untagged not in UNTAGGED:
        problems["untagged"] = "must be keep or drop"
    if problems:
        return None, problems
    rule = Rule(
        kind=str(kind),
        repositories=repositories,
        exclude_repositories=exclude_repositories,
        tags=tags,
        exclude_tags=exclude_tags,
        count=int(count) if kind in COUNTED and count is not None else None,
        days=float(days) if kind in PERIODS and days is not None else None,
        untagged=str(untagged),
    )
    return rule, {}


def rules_from_json(data: Any) -> tuple[list[Rule], dict[str, Any]]:
    """A whole rule list (``[rule, ...]``): the rules, or the problems of each by index."""
    if not isinstance(data, list):
        return [], {"rules": "must be a list of rules"}
    if len(data) > MAX_RULES:
        return [], {"rules": f"at most {MAX_RULES} rules per project"}
    rules: list[Rule] = []
    problems: dict[str, Any] = {}
    for i, item in enumerate(data):
        rule, found = rule_from_json(item)
        if rule is None:
            problems[str(i)] = found
        else:
            rules.append(rule)
    return rules, problems
