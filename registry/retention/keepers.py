"""The keepers seam: what else keeps tags whatever the rules say (immutable tags, #16's
part B). Retention asks every keeper, inside its read transaction, once per repository."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Connection


class TagKeeper(Protocol):
    """``tags`` of ``repository`` (in ``project``) that must stay: a subset of ``tags``."""

    def __call__(
        self, conn: Connection, project: str, repository: str, tags: list[str]
    ) -> set[str]: ...
