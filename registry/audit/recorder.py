"""What the audit log is told outside any transaction: logins, token grants and pulls.

:class:`AuditRecorder` is built with the app (before the database is open: the auth
setup and the token service are made then) and handed, as plain callbacks, to the
logins (``Logins.on_login``), the token service (``TokenEndpoint(on_grant=...)``) and
the pull listeners (``Services.pull_listeners``). Each callback builds a record from the
request in context and leaves it in the :class:`~registry.audit.buffer.AuditBuffer`;
none blocks, touches the database or raises.

Logins: a password actually checked (htpasswd, LDAP, local users, robots), succeeded or
failed; a request whose credentials are in the sources' cache of verified passwords is
not a new login (with Basic auth every request carries the password).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from registry.audit import records
from registry.audit.buffer import AuditBuffer
from registry.content.names import project_of
from registry.request_context import current_request

log = logging.getLogger("wharf.audit")


class AuditRecorder:
    """The callbacks of the audit log for logins, token grants and pulls."""

    def __init__(self, buffer: AuditBuffer, default_project: str, pulls: bool = True) -> None:
        self.buffer = buffer
        self.default = default_project
        self.pulls = pulls

    def login(self, user: str, source: str, result: str) -> None:
        """A password checked: ``result`` success, failure or error (LDAP down)."""
        try:
            outcome = "success" if result == "success" else "failure"
            details: dict[str, object] = {"source": source}
            if result not in ("success", "failure"):
                details["reason"] = result
            self.buffer.add(
                records.record(
                    records.LOGIN,
                    current_request.get(),
                    actor=user,
                    outcome=outcome,
                    details=details,
                )
            )
        except Exception:  # never fail a login
            log.exception("recording a login")

    def grant(self, subject: str | None, asked: Iterable[str], granted: Iterable[str]) -> None:
        """A token issued by the built-in token service: the scopes asked and granted
        (``repository:NAME:ACTIONS``)."""
        try:
            asked, granted = list(asked), list(granted)
            names = {
                s.split(":", 1)[1].rsplit(":", 1)[0] for s in asked if s.startswith("repository:")
            }
            repository = next(iter(names)) if len(names) == 1 else None
            project = project_of(repository, self.default) if repository is not None else None
            self.buffer.add(
                records.record(
                    records.TOKEN_GRANT,
                    current_request.get(),
                    actor=subject or "anonymous",
                    project=project,
                    repository=repository,
                    details={"asked": asked, "granted": granted},
                )
            )
        except Exception:
            log.exception("recording a token grant")

    def pulled(
        self,
        kind: str,
        repository: str,
        digest: str,
        media_type: str,
        size: int,
        tag: str | None,
        content: bytes | None,
    ) -> None:
        """A manifest GET (a pull listener); blob GETs are not recorded."""
        if kind != "manifest" or not self.pulls:
            return
        try:
            row = records.record(
                records.MANIFEST_PULL,
                current_request.get(),
                project=project_of(repository, self.default),
                repository=repository,
                reference=tag,
                digest=digest,
            )
            self.buffer.add_pull(row)
        except Exception:
            log.exception("recording a pull")
