"""``projects``: teams own namespaces (issue #15)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from registry.config.base import Duration, _Section, duration

# a project name is one path component of an OCI repository name
PROJECT_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


class ProjectsSettings(_Section):
    """``default``: the project of repositories without a slash; ``selfservice``: any
    authenticated user may create projects, and a push into a missing project creates
    it; ``refresh``: how often each worker checks for project changes made elsewhere."""

    default: str = "library"
    selfservice: bool = False
    refresh: Duration = duration("5s")

    @field_validator("default")
    @classmethod
    def _default(cls, value: Any) -> str:
        text = str(value)
        if len(text) > 255 or not PROJECT_NAME_RE.fullmatch(text):
            raise ValueError(
                "must be one component of a repository name (lowercase letters, digits, "
                "separated by '.', '_', '__' or '-')"
            )
        return text

    @field_validator("refresh")
    @classmethod
    def _refresh(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value
