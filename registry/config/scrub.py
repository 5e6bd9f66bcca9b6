"""``scrub``: the integrity scrub (issue #18, ``docs/scrub.md``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from registry.config.base import _Section

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*(?:/\s*s)?\s*$")
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_rate(value: Any) -> int:
    """Bytes per second from ``50MiB`` (or ``50MiB/s``, ``200MB``, a number of bytes);
    ``0``, ``unlimited`` or empty: no limit (0). ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"a rate such as 50MiB, not {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a rate must not be negative")
        return int(value)
    text = str(value).strip()
    if text.lower() in ("", "unlimited", "none"):
        return 0
    found = _RATE.match(text)
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS:
        raise ValueError(f"not a rate: {text!r} (bytes per second, or e.g. 50MiB, 200MB)")
    return int(float(found.group(1)) * _UNITS[unit])


class ScrubSettings(_Section):
    """The scrub (issue #18): stored blobs and manifests read back and checked against
    their digests, bad ones quarantined. ``rate``: how fast it reads (bytes per second:
    ``50MiB``; 0 for no limit), ``schedule``: an interval (``168h``) between runs or a
    5-field cron expression (``0 4 * * 0``, UTC), empty for none (then only ``wharf
    scrub`` and ``POST /api/scrub/runs`` start one); one run at a time across all nodes
    (a lease in the database). ``resume``: a scheduled run goes on where a stopped or
    interrupted one left off."""

    schedule: str = ""
    rate: int = 50 * 1024**2
    resume: bool = True

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> int:
        return parse_rate(value)

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        from registry.schedules import parse_schedule

        parse_schedule(str(value))
        return str(value)
