"""What an immutability rule is and what it matches.

Patterns are the globs of the replication rules (Python's ``fnmatchcase``): ``*``
matches any run of characters, ``/`` included (so ``**`` is the same as ``*``, and
``team/**`` is every repository of ``team`` at any depth), ``?`` one character,
``[abc]`` / ``[!abc]`` one of (not of) a set. Matching is case-sensitive and whole-string.

The repository pattern matches the whole repository name (``team/app``, as the
replication rules and the auth policy's rules do); a rule applies only to the
repositories of its own project, whatever its pattern, so ``*`` is "every repository of
the project". The tag pattern matches the tag (``release-*``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

MAX_PATTERN = 255
FIELDS = frozenset({"repository", "tag"})


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    project: str
    repository: str
    tag: str
    created_at: datetime
    created_by: str | None

    def matches(self, repository: str, tag: str) -> bool:
        return fnmatchcase(repository, self.repository) and fnmatchcase(tag, self.tag)

    def describe(self) -> str:
        return f"rule {self.id} (repository {self.repository}, tag {self.tag})"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "repository": self.repository,
            "tag": self.tag,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }

    def brief(self) -> dict[str, Any]:
        """The rule as an error's detail names it."""
        return {"id": self.id, "repository": self.repository, "tag": self.tag}


def first_match(rules: list[Rule], repository: str, tag: str) -> Rule | None:
    """The first rule (lowest id) that makes ``repository:tag`` immutable, or None."""
    return next((r for r in rules if r.matches(repository, tag)), None)


def pattern_problem(value: object) -> str | None:
    """Why ``value`` is no usable pattern (None if it is one)."""
    if not isinstance(value, str):
        return "must be a string (a glob: release-*, team/**)"
    if not value.strip():
        return "must not be empty"
    if len(value) > MAX_PATTERN:
        return f"must be at most {MAX_PATTERN} characters"
    if value != value.strip() or any(ord(c) < 32 or c == "\x7f" for c in value):
        return "must not contain spaces at its ends or control characters"
    if value.count("[") != value.count("]"):
        return "has an unclosed [ set ]"
    return None


def check_rule(data: object) -> tuple[str, str]:
    """The (repository, tag) patterns of a rule's JSON body; :class:`RuleProblems`
    with every field's problem otherwise."""
    if not isinstance(data, dict):
        raise RuleProblems({"body": 'must be a JSON object: {"repository": ..., "tag": ...}'})
    problems = {k: "unknown field" for k in data if k not in FIELDS}
    for key in sorted(FIELDS):
        if key not in data:
            problems[key] = "required"
        elif (problem := pattern_problem(data[key])) is not None:
            problems[key] = problem
    if problems:
        raise RuleProblems(problems)
    return data["repository"], data["tag"]


class RuleProblems(ValueError):
    """Every field's problem with a rule: ``{field: message}``."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems
