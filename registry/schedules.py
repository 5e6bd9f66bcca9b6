"""Schedules such as ``gc.schedule``: an interval between runs (``24h``) or a 5-field
cron expression (``0 3 * * *``, in UTC). A value that parses as a duration is an interval.
In the core, since the settings check them when they load."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from registry.durations import parse_duration

MIN_INTERVAL = 60.0  # shorter intervals are stretched to this
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Exactly one of ``interval`` (seconds) and ``cron`` is set."""

    interval: float | None = None
    cron: str | None = None


def parse_schedule(text: str | int | float) -> Schedule:
    """The schedule ``text`` names; ``ValueError`` with a readable message if neither
    a duration nor a 5-field cron expression."""
    try:  # a bare number is seconds, also once written back as text
        seconds = float(text) if _NUMBER.fullmatch(str(text).strip()) else parse_duration(text)
        return Schedule(interval=max(seconds, MIN_INTERVAL))
    except ValueError:
        pass
    from croniter import croniter

    expression = " ".join(str(text).split())
    if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
        raise ValueError(
            f"gc.schedule {text!r} is neither an interval (24h, 90m) nor a 5-field cron "
            "expression (minute hour day-of-month month day-of-week, e.g. '0 3 * * *')"
        )
    return Schedule(cron=expression)


def next_time(expression: str, now: datetime) -> datetime:
    """The first time of cron ``expression`` (UTC) strictly after ``now``."""
    from croniter import croniter

    following: datetime = croniter(expression, now.astimezone(UTC)).get_next(datetime)
    return following.astimezone(UTC)


def seconds_until_next(expression: str, now: datetime) -> tuple[datetime, float]:
    """The next time of ``expression`` after ``now``, and how many seconds away it is."""
    due = next_time(expression, now)
    return due, (due - now).total_seconds()
