"""What every settings section shares: the base model, the error, durations, addresses."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from registry.durations import parse_duration


def _checked_duration(value: Any) -> str:
    parse_duration(value)
    return str(value)


# A duration setting (``30s``, ``24h``, a number of seconds), checked when the config
# loads and kept as written.
Duration = Annotated[str, BeforeValidator(_checked_duration)]


class ConfigError(Exception):
    """Raised for a configuration file or environment that cannot be used."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def host_port(addr: str, key: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:5000``, ``:5000`` for every address) as (host, port)."""
    host, _, port = addr.rpartition(":")
    try:
        return (host.strip("[]") or "0.0.0.0", int(port))
    except ValueError:
        raise ConfigError(f"{key} must be host:port, got {addr!r}") from None
