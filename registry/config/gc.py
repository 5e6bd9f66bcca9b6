"""``gc``: online garbage collection."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from registry.config.base import Duration, OptionalDuration, _Section, duration


class GCSettings(_Section):
    """Online garbage collection (issue #7): ``schedule`` is an interval (``24h``) between
    runs or a 5-field cron expression (``0 3 * * *``, UTC), empty for none; one node runs
    each (a lease in the database)."""

    schedule: str = ""
    grace: Duration = duration("1h")
    deleteuntagged: bool = False
    untaggedage: OptionalDuration = None  # with deleteuntagged: keep untagged ones younger
    walk: bool = True  # also look for orphan files in storage
    # a blob HEAD/GET writes its pin at most this often; keep it well below the grace
    pinrefresh: Duration = duration("10s")

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        from registry.schedules import parse_schedule

        parse_schedule(str(value))
        return str(value)
