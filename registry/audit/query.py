"""The query parameters of ``/api/audit`` and its export, checked all at once.

``project``, ``user`` (the actor), ``action`` (exact, or a family: ``tag.*``),
``repository``, ``outcome`` (success|failure), ``since`` and ``until`` (RFC 3339, e.g.
``2026-12-04T10:00:00Z``, or epoch seconds; ``since`` included, ``until`` not),
``cursor`` (the ``next`` of the previous page), ``limit`` (1-1000, default 100),
``format`` (export: jsonl|csv). Every bad one is named in the error's ``detail``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from registry.audit.errors import AuditQueryInvalid
from registry.audit.records import OUTCOMES
from registry.audit.store import Cursor, Filters

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_TEXT = 255
KNOWN = frozenset(
    {"project", "user", "action", "repository", "outcome", "since", "until", "cursor", "limit"}
)
FORMATS = ("jsonl", "csv")
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?")


@dataclass(frozen=True, slots=True)
class Query:
    filters: Filters
    cursor: Cursor | None
    limit: int
    format: str = "jsonl"


def parse_time(text: str) -> float:
    """RFC 3339 (a zone required, ``Z`` allowed) or epoch seconds."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a time from 1970 on")
        return value
    try:
        when = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be RFC 3339 (2026-12-04T10:00:00Z) or epoch seconds") from None
    if when.tzinfo is None:
        raise ValueError("must name its time zone (Z or +01:00)")
    return when.timestamp()


def format_time(epoch: float) -> str:
    """Epoch seconds as RFC 3339 in UTC with microseconds (``...123456Z``)."""
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def format_cursor(row: Mapping[str, object]) -> str:
    """The cursor after ``row``: its time (``repr``: read back exactly) and id."""
    return f"{float(str(row['time']))!r}_{row['id']}"


def parse_cursor(text: str) -> Cursor:
    when, _, last = text.partition("_")
    if len(text) > 60 or not last.isdigit() or len(last) > 19:
        raise ValueError(text)
    value = float(when)
    if not math.isfinite(value):
        raise ValueError(text)
    return value, int(last)


def parse_query(params: Mapping[str, str], export: bool = False) -> Query:
    """The query of ``params`` (a request's query parameters); raises
    :class:`AuditQueryInvalid` naming every bad parameter."""
    problems: dict[str, str] = {}
    known = KNOWN | {"format"} if export else KNOWN
    for key in params:
        if key not in known:
            problems[key[:100]] = "unknown parameter (known: " + ", ".join(sorted(known)) + ")"
    text: dict[str, str | None] = {}
    for key in ("project", "user", "repository"):
        value = params.get(key)
        if value is not None and (not value or len(value) > MAX_TEXT):
            problems[key] = f"must be 1 to {MAX_TEXT} characters"
        text[key] = value
    action = params.get("action")
    if action is not None and (len(action) > 64 or not _ACTION.fullmatch(action)):
        problems["action"] = "must be an action (manifest.push) or a family (tag.*)"
    outcome = params.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        problems["outcome"] = "must be success or failure"
    times: dict[str, float | None] = {"since": None, "until": None}
    for key in times:
        value = params.get(key)
        if value is not None:
            try:
                times[key] = parse_time(value)
            except ValueError as e:
                problems[key] = str(e)
    since, until = times["since"], times["until"]
    if since is not None and until is not None and since > until:
        problems["until"] = "must not be before since"
    cursor: Cursor | None = None
    if (raw := params.get("cursor")) is not None:
        try:
            cursor = parse_cursor(raw)
        except ValueError:
            problems["cursor"] = "must be the next of a previous page"
    limit = DEFAULT_LIMIT
    if (raw := params.get("limit")) is not None:
        if raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_LIMIT:
            limit = int(raw)
        else:
            problems["limit"] = f"must be a whole number from 1 to {MAX_LIMIT}"
    fmt = params.get("format", "jsonl")
    if export and fmt not in FORMATS:
        problems["format"] = "must be jsonl or csv"
    if problems:
        raise AuditQueryInvalid(
            "invalid audit query: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
            detail=problems,
        )
    filters = Filters(
        project=text["project"],
        user=text["user"],
        action=action,
        repository=text["repository"],
        outcome=outcome,
        since=since,
        until=until,
    )
    return Query(filters, cursor, limit, fmt)
