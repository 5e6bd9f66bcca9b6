"""Starting projects: the directory every worker keeps, filled from the database at
startup and kept current; the default project; the hook that creates a missing project
on push; ``/api/projects``.

Freshness: a change made through this worker (API, a push that created a project)
reloads its copy at once; every worker also reads ``project_revision`` every
``projects.refresh`` and reloads when it changed, so a change made on another worker,
node or by ``wharf project`` is seen there within ``projects.refresh``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from starlette.types import ASGIApp, Scope

from registry.api.access import caller_of, is_open
from registry.api.context import Services
from registry.config import ProjectsSettings
from registry.errors import Denied, Unauthorized
from registry.meta.db import Database
from registry.meta.trail import NO_TRAIL, Trail
from registry.periodic import Periodic
from registry.projects import store
from registry.projects.api import PREFIX, ProjectsAPI
from registry.projects.directory import ProjectDirectory
from registry.projects.errors import ProjectUnknown
from registry.projects.hook import CreateOnPush
from registry.projects.manage import Projects
from registry.projects.roles import MAINTAINER, RANK

log = logging.getLogger("wharf.projects")
# after a push created a project: how long to wait for its commit before reloading again
AFTER_CREATE = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def build_directory(settings: ProjectsSettings) -> ProjectDirectory:
    """The directory, empty: made before the database is open, handed to the policy."""
    return ProjectDirectory(settings.default, settings.selfservice)


class DirectoryLoader:
    """Fills and refreshes a :class:`ProjectDirectory` from the database."""

    def __init__(self, db: Database, directory: ProjectDirectory) -> None:
        self.db = db
        self.directory = directory

    async def load(self) -> None:
        revision, projects = await self.db.run_read(store.load_snapshot)
        self.directory.replace(revision, projects)

    async def refresh(self) -> bool:
        """Reload if the revision changed; True if it did."""
        revision = await self.db.run_read(store.revision)
        if revision == self.directory.revision:
            return False
        await self.load()
        log.debug("projects reloaded at revision %d (%d projects)", revision, len(self.directory))
        return True

    async def until_seen(self, name: str) -> None:
        """Reload until project ``name`` (just created by a push, maybe not committed
        yet) is in the directory, for a short while; the periodic refresh does the rest."""
        for delay in AFTER_CREATE:
            await asyncio.sleep(delay)
            try:
                await self.refresh()
            except Exception as e:  # the periodic refresh will see it
                log.warning("reloading projects failed: %s", e)
                return
            if self.directory.exists(name):
                return


async def start_projects(
    services: Services,
    directory: ProjectDirectory,
    settings: ProjectsSettings,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
    trail: Trail = NO_TRAIL,
) -> Projects:
    """At startup: create the default project if missing, fill ``directory``, keep it
    current, create missing projects on push, mount ``/api/projects``."""
    db = services.meta.db
    if await db.run_write(store.ensure_project, settings.default, None, "startup"):
        log.info("created the default project %s", settings.default)
    loader = DirectoryLoader(db, directory)
    await loader.load()
    directory.keep_current(loader.refresh)
    periodic = Periodic(
        "projects-refresh", loader.refresh, log, interval=settings.refresh, jitter=(0.9, 1.0)
    )
    periodic.start()
    stack.callback(periodic.cancel)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def reload_soon(name: str) -> None:
        task = loop.create_task(loader.until_seen(name), name="projects-created")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def created(name: str) -> None:  # called from the writing thread
        loop.call_soon_threadsafe(reload_soon, name)

    stack.callback(lambda: [task.cancel() for task in list(tasks)])
    services.meta.add_hook(CreateOnPush(directory, created))
    projects = Projects(db, settings.default, loader.load, services.manifests.delete, trail)
    mount(PREFIX, ProjectsAPI(projects, settings.selfservice))
    return projects


def quota_access(directory: ProjectDirectory) -> Callable[[Scope, str, bool], None]:
    """Who may see and set a project's quota and usage (the roles' matrix,
    docs/projects.md): any member sees them, an owner sets the quota; system
    administrators (and everyone on an open registry) do both."""

    def check(scope: Scope, project: str, write: bool) -> None:
        caller = caller_of(scope)
        if is_open(scope) or (caller is not None and caller.admin):
            return
        if caller is None or caller.name is None:
            raise Unauthorized("credentials required")
        role = directory.role(caller.identity, project)
        if role is None or (write and role != "owner"):
            need = "an owner" if write else "a member"
            raise Denied(f"{caller.name} is not {need} of project {project}")

    return check


def robots_access(directory: ProjectDirectory) -> Callable[[Scope, str], Awaitable[None]]:
    """Who may manage a project's robot accounts (the roles' matrix, docs/projects.md):
    its maintainers and owners, and system administrators. A project the caller may not
    see (private, no role) or that does not exist answers 404, as the projects API."""

    async def check(scope: Scope, project: str) -> None:
        caller = caller_of(scope)
        if caller is None or caller.name is None:
            raise Unauthorized("credentials required")
        await directory.settle(f"{project}/robots")  # a project just made elsewhere
        entry = directory.get(project)
        if entry is None:
            raise ProjectUnknown(
                f"project {project} does not exist", detail={"name": project[:100]}
            )
        if is_open(scope) or caller.admin:
            return
        role = directory.role(caller.identity, project)
        if role is None and not entry.public:
            raise ProjectUnknown(detail={"name": project[:100]})
        if role is None or RANK[role] < RANK[MAINTAINER]:
            raise Denied(f"{caller.name} is not a maintainer or owner of project {project}")

    return check


def immutability_access(
    directory: ProjectDirectory,
) -> Callable[[Scope, str, bool], Awaitable[None]]:
    """Who may see and change a project's immutability rules (docs/immutability.md): any
    member (and any signed-in user of a public project) sees them, its maintainers and
    owners add and remove them; system administrators (and everyone on an open registry)
    do both. A project the caller may not see (private, no role) or that does not exist
    answers 404, as the projects API."""

    async def check(scope: Scope, project: str, write: bool) -> None:
        caller = caller_of(scope)
        if is_open(scope):
            return
        if caller is None or caller.name is None:
            raise Unauthorized("credentials required")
        await directory.settle(f"{project}/immutable")  # a project just made elsewhere
        entry = directory.get(project)
        if entry is None:
            raise ProjectUnknown(
                f"project {project} does not exist", detail={"name": project[:100]}
            )
        if caller.admin:
            return
        role = directory.role(caller.identity, project)
        if role is None and not entry.public:
            raise ProjectUnknown(detail={"name": project[:100]})
        if write and (role is None or RANK[role] < RANK[MAINTAINER]):
            raise Denied(f"{caller.name} is not a maintainer or owner of project {project}")

    return check


def retention_access(directory: ProjectDirectory) -> Callable[[Scope, str, bool], None]:
    """Who may see and change a project's retention rules and start its runs (the roles'
    matrix, docs/projects.md): any member sees them, maintainers and owners change and run
    them; system administrators (and everyone on an open registry) do both."""

    def check(scope: Scope, project: str, write: bool) -> None:
        caller = caller_of(scope)
        if is_open(scope) or (caller is not None and caller.admin):
            return
        if caller is None or caller.name is None:
            raise Unauthorized("credentials required")
        role = directory.role(caller.identity, project)
        if role is None or (write and RANK[role] < RANK[MAINTAINER]):
            need = "a maintainer or owner" if write else "a member"
            raise Denied(f"{caller.name} is not {need} of project {project}")

    return check


def audit_access(
    directory: ProjectDirectory,
) -> Callable[[Scope], Awaitable[frozenset[str] | None]]:
    """Whose audit records a caller sees (docs/audit.md): system administrators (and
    everyone on an open registry) every record (None), a project's owners that project's
    (the set of projects they own); anyone else none (Denied; Unauthorized anonymous)."""

    async def check(scope: Scope) -> frozenset[str] | None:
        caller = caller_of(scope)
        if is_open(scope) or (caller is not None and caller.admin):
            return None
        if caller is None or caller.name is None:
            raise Unauthorized("credentials required")
        owned = directory.owned_by(caller.identity)
        if not owned:
            raise Denied(f"{caller.name} is not an administrator or a project owner")
        return owned

    return check
