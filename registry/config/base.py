"""What every settings section shares: the base model, the error, durations, addresses."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, WithJsonSchema

from registry.durations import Seconds


def _seconds(value: Any) -> Seconds:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"a duration such as 30s, 5m or 24h, not {value!r}")
    return Seconds.parse(value)


def _optional_seconds(value: Any) -> Seconds | None:
    return None if value in (None, "") else _seconds(value)


def duration(text: str) -> Seconds:
    """A default for a :data:`Duration` setting, written as in the config (``"5m"``)."""
    return Seconds.parse(text)


_AS_TEXT = PlainSerializer(lambda value: "" if value is None else str(value), return_type=str)
_SCHEMA = WithJsonSchema({"type": "string", "examples": ["30s", "5m", "24h"]})

# A duration setting (``30s``, ``24h``, a number of seconds): parsed once when the config
# loads into seconds (a float) that remember the text, which ``wharf config`` prints.
Duration = Annotated[Seconds, PlainValidator(_seconds), _AS_TEXT, _SCHEMA]
# The same, where empty (or absent) means "none".
OptionalDuration = Annotated[Seconds | None, PlainValidator(_optional_seconds), _AS_TEXT, _SCHEMA]


class ConfigError(Exception):
    """Raised for a configuration file or environment that cannot be used. ``problems``
    holds each one found, as (key path, what is wrong), when there are several."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def host_port(addr: str, key: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:5000``, ``:5000`` for every address) as (host, port)."""
    host, _, port = addr.rpartition(":")
    try:
        return (host.strip("[]") or "0.0.0.0", int(port))
    except ValueError:
        raise ConfigError(f"{key} must be host:port, got {addr!r}") from None
