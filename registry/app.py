"""The composition root: builds storage, metadata and services from the settings."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

from starlette.types import ASGIApp, Receive, Scope, Send

from registry.accounts.setup import build_auth, start_auth, start_project_robots
from registry.accounts.token import TokenEndpoint, build_token_endpoint
from registry.api.access import CALLER_KEY, OPEN
from registry.api.context import Services
from registry.api.router import DistributionAPI
from registry.audit.setup import build_recorder, start_audit
from registry.check.setup import start_system
from registry.config import Settings, load_settings
from registry.drivers import make_driver
from registry.errors import NotFound
from registry.events.setup import start_events
from registry.gc.runner import options_from
from registry.gc.setup import gc_pins, start_gc
from registry.immutability.setup import ImmutableKeeper, start_immutability
from registry.logs import configure_logging
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.store import MetadataStore
from registry.meta.trail import NO_TRAIL, Trail
from registry.metrics import Metrics
from registry.middleware.auth import DISTRIBUTION, METRICS, MOUNTED, AuthMiddleware
from registry.middleware.errors import ErrorMiddleware
from registry.middleware.observe import ObserveMiddleware
from registry.projects.setup import (
    audit_access,
    build_directory,
    immutability_access,
    quota_access,
    retention_access,
    robots_access,
    start_projects,
)
from registry.quotas.setup import gc_removed, start_quotas
from registry.retention.setup import Retention, start_retention
from registry.scrub.setup import start_scrub
from registry.search.setup import facts_reader, start_search
from registry.service.blobs import BlobService
from registry.service.facts import FactsReader, no_facts
from registry.service.manifests import ManifestService
from registry.service.pins import Pins
from registry.service.purge import UploadPurger
from registry.service.uploads import UploadService
from registry.ui.setup import start_ui
from replicator.mirror import install_mirrors
from replicator.mirror_store import MirrorRoots
from replicator.setup import start_mirror_eviction, start_replication
from storage.blobs import BlobStore
from storage.uploads import UploadStore

log = logging.getLogger("wharf")
CONFIG_ENV = "WHARF_CONFIG"
IO_THREADS = 32


def check_auth(settings: Settings) -> None:
    """Load the auth files (htpasswd, keys) once, to stop `serve` early with a
    :class:`ConfigError` rather than in every worker."""
    setup = build_auth(settings.auth)
    if setup is not None:
        build_token_endpoint(settings.auth, setup)


async def build_services(
    settings: Settings,
    stack: AsyncExitStack,
    pins: Callable[[Database, Settings], Pins] | None = None,
    facts: FactsReader = no_facts,
) -> Services:
    """Open the database (creating the schema if empty) and wire the services, with the
    ``pins`` a garbage collector makes for them (none if None) and the ``facts`` the
    search index reads from a manifest before its push commits."""
    driver = make_driver(settings)
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, settings.database.poolsize, settings.database.echo)
    stack.push_async_callback(db.close)
    meta = MetadataStore(db)
    blobs = BlobStore(driver)
    delete = settings.storage.delete.enabled
    held = pins(db, settings) if pins is not None else None
    return Services(
        settings=settings,
        meta=meta,
        blobs=BlobService(meta, blobs, delete, held),
        uploads=UploadService(meta, UploadStore(driver), pins=held),
        manifests=ManifestService(
            meta, blobs, delete, settings.validation.manifestmaxsize, pins=held, facts=facts
        ),
    )


class Wharf:
    """The ASGI application: ``/v2/`` plus ``/metrics`` and ``/healthz``, with a lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.services: Services | None = None
        # immutable tags (#16): which tags a rule holds, for retention to keep
        self.keeper: ImmutableKeeper | None = None
        self.retention: Retention | None = None  # tag retention (#16), once started
        self._api: DistributionAPI | None = None
        self._stack = AsyncExitStack()
        # Wharf's own API and pages (events, GC, search, replication, accounts, UI):
        # (path prefix, ASGI app), mounted by startup() once the services exist.
        # A mount narrowed to some paths under its prefix comes first (/api/projects/NAME/quota
        # is the quota feature's, the rest of /api/projects the projects feature's).
        self._mounts: list[tuple[str, ASGIApp, Callable[[str], bool] | None]] = []
        # projects (#15): the roles' directory, empty until startup fills it
        self.projects = build_directory(settings.projects)
        # audit log (#16): told of logins, token grants and pulls; written from startup
        self.audit = build_recorder(settings)
        self.trail: Trail = NO_TRAIL  # its trail of administrative changes, from startup
        on_login = self.audit.login if self.audit is not None else None
        on_grant = self.audit.grant if self.audit is not None else None
        # auth (issue #4): files are read here, so a bad htpasswd or key stops `serve`
        self._auth = build_auth(settings.auth, roles=self.projects, on_login=on_login)
        self._token: TokenEndpoint | None = (
            build_token_endpoint(settings.auth, self._auth, on_grant) if self._auth else None
        )
        inner: ASGIApp = self._dispatch
        if self._auth is not None:
            inner = AuthMiddleware(inner, self._auth.gate, self._match, self.classify)
        self._handler = ObserveMiddleware(
            ErrorMiddleware(inner),
            self.metrics,
            log_enabled=not settings.log.accesslog.disabled,
            extra_headers=settings.http.headers,
        )

    async def startup(self) -> None:
        # Blocking file I/O (fsync above all) runs in the default executor: give it room
        # for the concurrency a registry sees, so slow syncs of one request do not queue
        # every other request's small reads behind them.
        executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="wharf-io")
        asyncio.get_running_loop().set_default_executor(executor)
        self._stack.callback(executor.shutdown, wait=False)
        self.services = await build_services(
            self.settings, self._stack, pins=gc_pins, facts=facts_reader()
        )
        self.services = install_mirrors(self.services, self._stack)  # pull-through (#6)
        self._api = DistributionAPI(self.services)
        purging = self.settings.storage.maintenance.uploadpurging
        if purging.enabled:
            purger = UploadPurger(
                self.services.uploads.uploads,
                purging.age,
                purging.interval_seconds,
                purging.dryrun,
            )
            task = asyncio.create_task(purger.run_forever(), name="upload-purge")
            self._stack.callback(task.cancel)
        self.trail = start_audit(  # audit log (#16): owners see their projects' records
            self.services, self.audit, self._stack, self.mount, audit_access(self.projects)
        )
        await start_projects(  # projects (#15): before any request is served
            self.services,
            self.projects,
            self.settings.projects,
            self._stack,
            self.mount,
            self.trail,
        )
        self._start_features()
        log.info(
            "wharf ready: storage=%s database=%s",
            self.settings.storage.driver,
            self.settings.database_url.split("://")[0],
        )

    def mount(self, prefix: str, app: ASGIApp, paths: Callable[[str], bool] | None = None) -> None:
        """Serve every path under ``prefix`` (``/api/gc``) with ``app``; with ``paths``,
        only those of them for which it is true (before any mount without ``paths``)."""
        entry = (prefix.rstrip("/"), app, paths)
        if paths is None:
            self._mounts.append(entry)
        else:
            narrowed = sum(1 for _, _, p in self._mounts if p is not None)
            self._mounts.insert(narrowed, entry)

    def _start_features(self) -> None:
        """Mount the feature APIs and start their background tasks (each feature adds
        its lines here; ``self._stack`` cancels and closes them at shutdown)."""
        assert self.services is not None
        gc = start_gc(  # online GC (#7), keeping what the pull-through mirror cached (#6)
            self.services,
            self.metrics.registry,
            self._stack,
            self.mount,
            [MirrorRoots()],
            # usage per project goes down with what it deletes (#15)
            removed=[gc_removed(self.settings.projects.default).removed],
            trail=self.trail,
        )
        if self._auth is not None:  # robot accounts, LDAP group refresh, login metrics (#4)
            start_auth(self._auth, self.services, self.metrics, self._stack, self.mount, self.trail)
            # project robots (#15): managed by the project's maintainers (the roles)
            start_project_robots(
                self.services, self.mount, robots_access(self.projects), self.trail
            )
        search = start_search(self.services, self.mount)  # search (#8)
        # web UI (#8); its projects' pages call /api/ in-process as the viewer (#17)
        start_ui(self.services, search, self.mount, self._auth, self.own_api)
        outbox = start_events(self.services, self.metrics.registry, self._stack, self.mount)
        quota_events = outbox.record if outbox is not None else None  # events (#5) ^
        start_quotas(  # quotas (#15)
            self.services,
            self.metrics.registry,
            self.mount,
            quota_events,
            default_project=self.settings.projects.default,
            access=quota_access(self.projects),  # members see, owners set (the roles)
            trail=self.trail,
        )
        start_system(self.settings, self.mount)  # /api/system: wharf check's probes (#17)
        self.keeper = start_immutability(  # immutable tags (#16): the keeper is retention's
            self.services,
            self.metrics.registry,
            self.mount,
            default_project=self.settings.projects.default,
            access=immutability_access(self.projects),  # maintainers and owners change rules
            trail=self.trail,
        )
        settings = self.settings

        async def gc_after_retention() -> int:
            return await gc.start(options_from(settings), "retention")

        self.retention = start_retention(  # tag retention and last-pull times (#16)
            self.services,
            self._stack,
            self.mount,
            start_gc=gc_after_retention,
            access=retention_access(self.projects),  # members see, maintainers+ run
            keepers=[self.keeper],  # immutable tags stay whatever the rules say
            trail=self.trail,
        )
        replication = start_replication(  # (#6)
            self.services, self.metrics, self.mount, self.trail
        )
        # the integrity scrub (#18): /api/scrub, scrub.schedule, scrub_bad events
        start_scrub(self.services, self.metrics.registry, self._stack, self.mount, quota_events)
        if replication is not None:
            self._stack.callback(replication.cancel)
        # the mirror's cache evicted once nobody pulls it (#16)
        start_mirror_eviction(self.services, self.metrics.registry, self._stack, self.mount)

    async def shutdown(self) -> None:
        await self._stack.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._handler(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as e:
                    log.error("startup failed: %s", e)
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _match(self, path: str) -> tuple[str, dict[str, str]] | None:
        """The route label and parameters of a ``/v2/`` path, for the auth middleware."""
        found = self._api.match(path) if self._api is not None else None
        return (found[0].label, found[1]) if found else None

    def classify(self, path: str) -> str:
        """What serves ``path`` (the decoded path, as uvicorn gives it): the one answer
        both the dispatcher and the auth middleware act on."""
        if self._token is not None and path == self._token.path:
            return "token"
        if path.startswith("/v2"):
            return DISTRIBUTION
        if self._mounted(path) is not None:
            return MOUNTED
        if path == "/metrics":
            return METRICS
        if path in ("/healthz", "/debug/health"):
            return "health"
        return "none"

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        kind = self.classify(path)
        if self._auth is None:
            scope[CALLER_KEY] = OPEN  # no auth configured: everyone may do everything
        if kind == "token" and self._token is not None:
            await self._token(scope, receive, send)
        elif kind == DISTRIBUTION and self._api is not None:
            await self._api(scope, receive, send)
        elif kind == MOUNTED and (mounted := self._mounted(path)) is not None:
            await mounted(scope, receive, send)
        elif kind == METRICS:
            scope["wharf.route"] = "metrics"
            await _plain(send, 200, self.metrics.render(), self.metrics.content_type)
        elif kind == "health":
            scope["wharf.route"] = "health"
            await self._health(send)
        else:
            raise NotFound(detail={"path": path[:300]})

    async def own_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wharf's own ``/api/`` mounts, for in-process callers that set the caller
        themselves (the web pages: :mod:`registry.ui.internal`)."""
        path: str = scope["path"]
        mounted = self._mounted(path) if path.startswith("/api/") else None
        if mounted is None:
            raise NotFound(detail={"path": path[:300]})
        await mounted(scope, receive, send)

    def _mounted(self, path: str) -> ASGIApp | None:
        for prefix, app, paths in self._mounts:
            if (path == prefix or path.startswith(prefix + "/")) and (paths is None or paths(path)):
                return app
        return None

    async def _health(self, send: Send) -> None:
        status, body = 200, b'{"status":"ok"}'
        try:
            assert self.services is not None
            await self.services.meta.db.ping()
        except Exception as e:
            log.warning("health check failed: %s", e)
            status, body = 503, b'{"status":"unavailable","database":"unreachable"}'
        await _plain(send, status, body, "application/json")


async def _plain(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None) -> Wharf:
    """The ASGI app for ``settings`` (read from ``$WHARF_CONFIG`` and the environment if None)."""
    if settings is None:  # a worker process started by `wharf serve`
        settings = load_settings(os.environ.get(CONFIG_ENV) or None)
        configure_logging(settings.log)
    return Wharf(settings)
