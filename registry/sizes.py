"""Byte sizes as operators write them (``10GiB``, ``500MB``) and as people read them:
the quotas' API and CLI, and the web pages' quota form, read them alike."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
MAX_BYTES = 2**63 - 1  # a BIGINT


def parse_size(text: str) -> int:
    """``10GiB`` -> 10737418240, ``500MB`` -> 500000000, ``123`` -> 123 (bytes).

    Raises ValueError for anything else (negative numbers included)."""
    found = _SIZE.match(text)
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS:
        raise ValueError(
            f"not a size: {text!r} (bytes, or a number with kB, MB, GB, KiB, MiB, GiB...)"
        )
    value = float(found.group(1)) * _UNITS[unit]
    if value > MAX_BYTES:
        raise ValueError(f"{text!r} is too large")
    return int(value)


def format_size(n: int | None) -> str:
    """``1.5 GiB``; ``none`` for None."""
    if n is None:
        return "none"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
