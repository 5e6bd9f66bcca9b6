"""The pull-through mirror: repositories under a prefix (or the whole registry, with
``proxy.remoteurl``) mirror an upstream registry.

Installed by :func:`install_mirrors` in place of the plain services when mirrors are
configured. A manifest not here is fetched on first pull, its bytes stored
content-addressed and noted (tag or digest -> digest) in ``mirror_manifests``; a tag is
checked again with a HEAD once older than the mirror's ``ttl``, and the cached one is
served when the upstream cannot be reached (:mod:`replicator.mirror_services`).

A blob not here is fetched from upstream once per registry, however many clients,
worker processes and nodes (sharing the database and storage) pull it at once: the
request that takes the fetch's lease fetches it (:mod:`replicator.mirror_fetch`), every
other request follows that fetch (:mod:`replicator.mirror_blobs`). Pushes and deletes
under a mirrored prefix are refused with ``DENIED``. The upstreams are read from the
settings by :mod:`replicator.mirror_upstreams`, the tables' SQL is in
:mod:`replicator.mirror_store`.
"""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack

from registry.api.context import Services
from replicator.mirror_blobs import MirroredBlobs
from replicator.mirror_services import MirroredManifests, MirroredUploads
from replicator.mirror_store import FetchLeases, MirrorStore, mirrored_repositories
from replicator.mirror_upstreams import Mirrors, upstreams


def install_mirrors(services: Services, stack: AsyncExitStack) -> Services:
    """The services, wrapped by the mirror when ``mirrors`` or ``proxy`` are configured.
    The catalog lists the repositories holding a mirror's manifests either way (those of
    a mirror configured before, too)."""
    services.meta.add_catalog_source(mirrored_repositories)
    ups = upstreams(services.settings)
    if not ups:
        return services
    mirrors = Mirrors(ups)
    stack.push_async_callback(mirrors.close)
    blobs = MirroredBlobs(
        services.blobs, mirrors, services.uploads.uploads, FetchLeases(services.meta.db)
    )
    stack.push_async_callback(blobs.close)  # before the upstream clients close
    return dataclasses.replace(
        services,
        blobs=blobs,
        manifests=MirroredManifests(services.manifests, mirrors, MirrorStore(services.meta.db)),
        uploads=MirroredUploads(services.uploads, mirrors),
    )
