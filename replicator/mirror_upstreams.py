"""The upstream registries a pull-through mirror serves (``mirrors`` and ``proxy`` in the
settings), and which of them serves a repository."""

from __future__ import annotations

from dataclasses import dataclass

from registry.config import Settings
from registry.errors import Denied
from replicator.client import RegistryClient


@dataclass
class Upstream:
    prefix: str  # "" mirrors the whole registry
    client: RegistryClient
    ttl: float
    lease: float = 30.0  # a blob fetch's lease (``fetchlease``)


class Mirrors:
    """The configured upstreams; finds the one serving a repository (longest prefix)."""

    def __init__(self, upstreams: list[Upstream]) -> None:
        self.upstreams = sorted(upstreams, key=lambda u: -len(u.prefix))

    def find(self, repository: str) -> tuple[Upstream, str] | None:
        """(upstream, repository name there) for a mirrored repository, else None."""
        for up in self.upstreams:
            if not up.prefix:
                return up, repository
            if repository.startswith(up.prefix + "/"):
                return up, repository[len(up.prefix) + 1 :]
        return None

    def refuse_writes(self, repository: str) -> None:
        found = self.find(repository)
        if found is not None:
            raise Denied(
                f"{repository} mirrors {found[0].client.url}: pushes and deletes are refused"
            )

    async def close(self) -> None:
        for up in self.upstreams:
            await up.client.close()


def upstreams(settings: Settings) -> list[Upstream]:
    found: list[Upstream] = []
    for m in settings.mirrors:
        client = RegistryClient(
            m.remoteurl, m.username, m.password, insecure=m.insecure, cacert=m.cacert
        )
        found.append(Upstream(m.prefix.strip("/"), client, m.ttl, m.fetchlease))
    proxy = settings.proxy
    if proxy.remoteurl:
        client = RegistryClient(proxy.remoteurl, proxy.username, proxy.password)
        found.append(Upstream("", client, proxy.ttl, proxy.fetchlease))
    return found
