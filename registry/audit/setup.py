"""Starting the audit log: the recorder (made with the app, for the auth setup and the
token service), the change hook, the trail handed to the features that make
administrative changes, the batch writer, the retention purge and ``/api/audit``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

from starlette.types import ASGIApp

from registry.api.context import Services
from registry.audit.api import PREFIX, Access, AuditAPI, admins_only
from registry.audit.buffer import AuditBuffer
from registry.audit.hook import AuditHook, audit_trail, cli_trail
from registry.audit.purge import purge
from registry.audit.recorder import AuditRecorder
from registry.config import Settings
from registry.meta.trail import NO_TRAIL, Trail
from registry.periodic import Periodic

__all__ = ["AuditRecorder", "build_recorder", "cli_trail", "start_audit"]

log = logging.getLogger("wharf.audit")


def build_recorder(settings: Settings) -> AuditRecorder | None:
    """The callbacks for logins, token grants and pulls (None with the audit log off);
    made before the database is open, written once :func:`start_audit` ran."""
    if not settings.audit.enabled:
        return None
    return AuditRecorder(AuditBuffer(), settings.projects.default, settings.audit.pulls)


def start_audit(
    services: Services,
    recorder: AuditRecorder | None,
    stack: AsyncExitStack,
    mount: Callable[[str, ASGIApp], None],
    access: Access = admins_only,
) -> Trail:
    """Record every change in its transaction, write the buffered records, purge old
    ones; serve ``/api/audit`` (also with the log off: the records kept from before).
    Returns the trail for administrative changes (``NO_TRAIL`` with the log off)."""
    settings = services.settings.audit
    db = services.meta.db
    mount(PREFIX, AuditAPI(db, access))
    if recorder is None:
        return NO_TRAIL
    services.meta.add_hook(AuditHook(services.settings.projects.default))
    services.pull_listeners.append(recorder.pulled)
    buffer = recorder.buffer
    buffer.db = db
    flushing = asyncio.create_task(buffer.run_forever(), name="audit-flush")

    async def purge_job() -> None:
        await purge(db, settings.retention)

    purger = Periodic(
        "audit-purge",
        purge_job,
        log,
        interval=settings.purgeinterval,
        first=(1.0, min(settings.purgeinterval, 60.0)),
        jitter=(0.9, 1.0),
    )
    purger.start()

    async def stop() -> None:
        purger.cancel()
        flushing.cancel()
        await buffer.flush()

    stack.push_async_callback(stop)
    return audit_trail
