"""``replication`` (remotes and rules), ``proxy`` and ``mirrors[]`` (pull-through), and
``mirroreviction`` (when the mirrors' cache is evicted, issue #16)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from registry.config.base import Duration, _Section, duration


class RemoteSettings(_Section):
    """A remote registry: URL, credentials (Basic, or the user of a token service), TLS."""

    url: str
    username: str = ""
    password: str = ""
    insecure: bool = False  # do not verify the TLS certificate
    cacert: str = ""  # CA bundle (PEM) to verify it with


class ReplicationRuleSettings(_Section):
    """``replication.rules[]``: what to copy between this registry and a remote one."""

    name: str
    remote: RemoteSettings
    direction: Literal["push", "pull"] = "push"
    repositories: list[str] = Field(default_factory=lambda: ["*"])  # include globs
    exclude: list[str] = Field(default_factory=list)  # repository globs
    tags: list[str] = Field(default_factory=list)  # include: globs, or re:<regex>
    excludetags: list[str] = Field(default_factory=list)
    prefix: str = ""  # destination repository prefix
    schedule: str = ""  # cron expression (croniter); empty: on push / on demand only
    onpush: bool = False
    deletes: bool = False  # propagate tag deletes
    maxparallel: int = Field(default=4, ge=1, le=64)
    bandwidth: str = ""  # bytes per second: 10M, 512K, 1G; empty: unlimited
    retries: int = Field(default=3, ge=0)  # per blob, within a run
    chunksize: str = "16M"

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if value:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"invalid cron schedule {value!r}")
        return value


class ReplicationSettings(_Section):
    """``replication``: rules, and how the replicator reaches this registry itself."""

    rules: list[ReplicationRuleSettings] = Field(default_factory=list)
    local: RemoteSettings | None = None  # default: http(s)://http.addr, no credentials
    enabled: bool = True  # run schedules and on-push triggers in `serve`

    @model_validator(mode="after")
    def _unique(self) -> ReplicationSettings:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("replication rule names must be unique")
        return self


class _UpstreamSettings(_Section):
    """What every pull-through upstream has."""

    remoteurl: str = ""
    username: str = ""
    password: str = ""
    ttl: Duration = duration("1h")  # re-check a cached tag with a HEAD after this long
    # a blob fetch's lease: a dead fetcher's expires after this
    fetchlease: Duration = duration("30s")
    # eviction (#16): cached content nobody pulled for this long goes (Harbor's 7 days)
    maxage: Duration = duration("168h")
    # and, when set, the least recently pulled until the cache holds at most this many
    # bytes (a number, or with a unit: 500MB, 10GiB)
    maxbytes: int | None = None

    @field_validator("maxage")
    @classmethod
    def _positive_age(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("maxage must be longer than 0s")
        return value

    @field_validator("maxbytes", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int | None:
        return parse_size(value)


class ProxySettings(_UpstreamSettings):
    """``proxy`` (as in the reference registry): mirror one upstream for the whole registry."""

    ttl: Duration = duration("168h")


class MirrorSettings(_UpstreamSettings):
    """``mirrors[]`` (Wharf's own): mirror an upstream under a repository prefix."""

    prefix: str
    remoteurl: str
    insecure: bool = False
    cacert: str = ""


_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS |= {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> int | None:
    """A byte count setting: a whole number of bytes from 1, or a number with a unit
    (``500MB``, ``10GiB``); None or empty for none."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"a number of bytes such as 500MB or 10GiB, not {value!r}")
    found = _SIZE.match(str(value))
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS:
        raise ValueError(f"a number of bytes such as 500MB or 10GiB, not {value!r}")
    size = int(float(found.group(1)) * _UNITS[unit])
    if not 1 <= size <= 2**63 - 1:
        raise ValueError(f"a number of bytes from 1 to 2^63-1, not {value!r}")
    return size


class MirrorEvictionSettings(_Section):
    """``mirroreviction`` (#16): how often every process evicts what the mirrors cached
    and nobody pulled for the upstream's ``maxage`` (or beyond its ``maxbytes``)."""

    enabled: bool = True
    interval: Duration = duration("10m")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 1:
            raise ValueError("interval must be at least 1s")
        return value
