"""``replication`` (remotes and rules), ``proxy`` and ``mirrors[]`` (pull-through)."""

from __future__ import annotations

from typing import Literal

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


class ProxySettings(_UpstreamSettings):
    """``proxy`` (as in the reference registry): mirror one upstream for the whole registry."""

    ttl: Duration = duration("168h")


class MirrorSettings(_UpstreamSettings):
    """``mirrors[]`` (Wharf's own): mirror an upstream under a repository prefix."""

    prefix: str
    remoteurl: str
    insecure: bool = False
    cacert: str = ""
