"""``gc``: online garbage collection."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from registry.config.base import Duration, _Section
from registry.durations import parse_duration


class GCSettings(_Section):
    """Online garbage collection (issue #7): ``schedule`` is an interval (``24h``) between
    runs or a 5-field cron expression (``0 3 * * *``, UTC), empty for none; one node runs
    each (a lease in the database)."""

    schedule: str = ""
    grace: Duration = "1h"
    deleteuntagged: bool = False
    untaggedage: str = ""  # with deleteuntagged: keep untagged manifests younger than this
    walk: bool = True  # also look for orphan files in storage
    # a blob HEAD/GET writes its pin at most this often; keep it well below the grace
    pinrefresh: Duration = "10s"

    @field_validator("untaggedage", mode="before")
    @classmethod
    def _optional_duration(cls, value: Any) -> str:
        if value not in (None, ""):
            parse_duration(value)
        return "" if value is None else str(value)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        from registry.schedules import parse_schedule

        parse_schedule(str(value))
        return str(value)
