"""What a rule selects: repository globs, tag patterns, destination names, remotes."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from registry.config import RemoteSettings, ReplicationRuleSettings, Settings
from replicator.client import RegistryClient
from replicator.streams import parse_size


def _tag_match(pattern: str, tag: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], tag) is not None
    return fnmatchcase(tag, pattern)


def repository_selected(rule: ReplicationRuleSettings, repository: str) -> bool:
    """Matches an include glob and no exclude glob (``*`` also matches ``/``)."""
    return any(fnmatchcase(repository, p) for p in rule.repositories) and not any(
        fnmatchcase(repository, p) for p in rule.exclude
    )


def tag_selected(rule: ReplicationRuleSettings, tag: str) -> bool:
    """Matches an include pattern (all tags without any) and no exclude pattern.
    Patterns are globs, or regular expressions written ``re:<regex>``."""
    if rule.tags and not any(_tag_match(p, tag) for p in rule.tags):
        return False
    return not any(_tag_match(p, tag) for p in rule.excludetags)


def literal_repositories(rule: ReplicationRuleSettings) -> list[str] | None:
    """The include list when it names repositories without wildcards (no catalog needed)."""
    if any(set(p) & set("*?[") for p in rule.repositories):
        return None
    return list(rule.repositories)


def destination(rule: ReplicationRuleSettings, repository: str) -> str:
    """The repository name at the target: the source name under ``prefix``."""
    prefix = rule.prefix.strip("/")
    return f"{prefix}/{repository}" if prefix else repository


def local_remote(settings: Settings) -> RemoteSettings:
    """How the replicator reaches this registry: ``replication.local``, or ``http.addr``."""
    if settings.replication.local is not None:
        return settings.replication.local
    host, port = settings.http.bind
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    tls = bool(settings.http.tls.certificate)
    return RemoteSettings(url=f"{'https' if tls else 'http'}://{host}:{port}", insecure=tls)


def client_for(remote: RemoteSettings) -> RegistryClient:
    return RegistryClient(
        remote.url,
        remote.username,
        remote.password,
        insecure=remote.insecure,
        cacert=remote.cacert,
    )


def chunk_size(rule: ReplicationRuleSettings) -> int:
    return max(parse_size(rule.chunksize), 64 * 1024)


def bandwidth(rule: ReplicationRuleSettings) -> int:
    return parse_size(rule.bandwidth)
