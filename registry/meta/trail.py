"""Administrative changes, handed to a trail inside the transaction that makes them.

Content changes (pushes, deletes) reach features through change hooks
(:mod:`registry.meta.changes`). Everything else an administrator or a project owner
changes (projects, members, quotas, robots, rules of every kind, GC runs) is an
:class:`AdminChange`, handed by the feature that makes it to the :class:`Trail` it was
given at construction, with the open connection of the change's own transaction, so the
record (the audit log's) commits or rolls back with the change. Without an audit log the
trail is :data:`NO_TRAIL`, which records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import Connection

from registry.request_context import RequestInfo, current_request

Outcome = Literal["success", "failure"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AdminChange:
    """One administrative change.

    ``action`` is dotted, the feature first: ``project.create``, ``member.add``,
    ``quota.set``, ``robot.create``, ``retention.rule.update``, ``gc.run.start``.
    ``target`` names what changed (a project, ``user:alice``, a rule's id).
    ``request`` is the HTTP request that made it (who, from where, with what client);
    None outside a request (the CLI), where ``actor`` may name who ran it."""

    action: str
    target: str
    project: str | None = None
    repository: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)
    outcome: Outcome = "success"
    request: RequestInfo | None = field(default_factory=current_request.get)
    actor: str | None = None


class Trail(Protocol):
    """Records an administrative change on the change's own open connection."""

    def __call__(self, conn: Connection, change: AdminChange) -> None: ...


def _no_trail(conn: Connection, change: AdminChange) -> None:
    """Records nothing: the trail of a registry without an audit log."""


NO_TRAIL: Trail = _no_trail


def traced(
    fn: Callable[..., T], trail: Trail, change: Callable[[T], AdminChange | None]
) -> Callable[..., T]:
    """``fn`` (a write function, ``fn(conn, *args)``) that also hands the trail, on the
    same connection, the change ``change(result)`` says it made (None: it made none, e.g.
    nothing of that name). Call it in the request's task: the request in context then is
    the change's (the write itself runs in the database's writer thread)."""
    request = current_request.get()

    def write(conn: Connection, *args: Any) -> T:
        result = fn(conn, *args)
        made = change(result)
        if made is not None and trail is not NO_TRAIL:
            trail(conn, made if made.request is not None else replace(made, request=request))
        return result

    return write


# the trail of a command (``wharf project``, ``wharf quota``...) for its settings: given
# by registry/cli.py to each feature's ``add_commands(sub, trail=...)``
TrailFor = Callable[[Any], Trail]


def command_trail(args: object, settings: object) -> Trail:
    """The trail a command's parsed ``args`` carry (``trail_for``, set as a default by
    its ``add_commands``), for ``settings``; :data:`NO_TRAIL` without one."""
    make = getattr(args, "trail_for", None)
    return make(settings) if make is not None else NO_TRAIL
