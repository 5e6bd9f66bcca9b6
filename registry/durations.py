"""Durations written as in the reference registry's config (``168h``, ``30m``, ``10s``)."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Seconds(float):
    """A duration from the configuration: its seconds, and the text it was written as
    (``str()`` gives the text back, so ``wharf config`` prints what the operator wrote)."""

    text: str

    def __new__(cls, seconds: float, text: str | None = None) -> Seconds:
        value = super().__new__(cls, seconds)
        value.text = text if text is not None else f"{float(seconds):g}s"
        return value

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str | int | float) -> Seconds:
        """``text`` read by :func:`parse_duration`; raises ``ValueError``."""
        if isinstance(text, Seconds):
            return text
        return cls(parse_duration(text), str(text).strip())


def parse_duration(text: str | int | float) -> float:
    """Seconds in a Go-style duration such as ``1h30m``; a bare number is seconds.

    Raises ``ValueError`` for anything else.
    """
    if isinstance(text, int | float):
        return float(text)
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    if _NUMBER.fullmatch(value):  # a bare number, as YAML's 0 or 30 read as text
        return float(value)
    pos, total = 0, 0.0
    while pos < len(value):
        m = _PART.match(value, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _SECONDS[m.group(2)]
        pos = m.end()
    return total
