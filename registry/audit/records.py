"""What one audit record holds, and how each kind of action becomes one.

A record is a plain dict of the ``audit_records`` columns (``details`` as a dict here,
JSON in the table). Who asked comes from the request (``registry.request_context``):
its actor, client address, user agent and id; outside a request (the CLI, background
loops) they are empty and an ``actor`` may be given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from registry.content.names import project_of
from registry.meta.changes import Change
from registry.meta.trail import AdminChange
from registry.request_context import RequestInfo

Row = dict[str, Any]

# the actions, as the API filters and shows them
MANIFEST_PUSH = "manifest.push"
TAG_MOVE = "tag.move"
MANIFEST_DELETE = "manifest.delete"
TAG_DELETE = "tag.delete"
BLOB_DELETE = "blob.delete"
MANIFEST_PULL = "manifest.pull"
LOGIN = "login"
TOKEN_GRANT = "token.grant"
OUTCOMES = ("success", "failure")

COLUMNS = (
    "id",
    "time",
    "actor",
    "addr",
    "useragent",
    "request_id",
    "action",
    "outcome",
    "project",
    "repository",
    "reference",
    "digest",
    "details",
)
LIMITS = {"actor": 255, "addr": 64, "useragent": 512, "request_id": 64, "reference": 255}


def _cut(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def client_address(addr: str) -> str:
    """The client's address without its port (``RequestInfo.addr`` is ``host:port``)."""
    host, sep, port = addr.rpartition(":")
    return host if sep and port.isdigit() else addr


def record(
    action: str,
    request: RequestInfo | None,
    *,
    actor: str | None = None,
    outcome: str = "success",
    project: str | None = None,
    repository: str | None = None,
    reference: str | None = None,
    digest: str | None = None,
    details: Mapping[str, object] | None = None,
    when: float | None = None,
) -> Row:
    """One row; ``actor`` (if given) wins over the request's authenticated actor."""
    who = actor if actor is not None else (request.actor if request is not None else None)
    return {
        "time": time.time() if when is None else when,
        "actor": _cut(who, LIMITS["actor"]),
        "addr": _cut(client_address(request.addr), LIMITS["addr"]) if request else None,
        "useragent": _cut(request.useragent, LIMITS["useragent"]) if request else None,
        "request_id": _cut(request.id, LIMITS["request_id"]) if request is not None else None,
        "action": action,
        "outcome": outcome,
        "project": project,
        "repository": repository,
        "reference": _cut(reference, LIMITS["reference"]),
        "digest": digest or None,
        "details": dict(details or {}),
    }


def of_change(change: Change, default_project: str) -> Row | None:
    """The record of a content change (None: not recorded: blob pushes and mounts, which
    a manifest push sums up)."""
    project = project_of(change.repository, default_project)
    common: dict[str, Any] = {
        "project": project,
        "repository": change.repository,
        "digest": change.digest,
    }
    if change.kind == "manifest" and change.action == "push":
        previous = change.details.get("retagged_from")
        details: dict[str, object] = {"media_type": change.media_type, "size": change.size}
        if isinstance(previous, str) and previous != change.digest:
            details["previous"] = previous
            action = TAG_MOVE
        else:
            action = MANIFEST_PUSH
        return record(action, change.request, reference=change.tag, details=details, **common)
    if change.kind == "manifest" and change.action == "delete":
        untagged = change.details.get("untagged") or []
        details = {"media_type": change.media_type, "size": change.size, "untagged": untagged}
        return record(MANIFEST_DELETE, change.request, details=details, **common)
    if change.kind == "tag" and change.action == "delete":
        return record(TAG_DELETE, change.request, reference=change.tag, **common)
    if change.kind == "blob" and change.action == "delete":
        return record(BLOB_DELETE, change.request, **common)
    return None


def of_admin(change: AdminChange) -> Row:
    """The record of an administrative change (``target`` goes into the details)."""
    return record(
        change.action,
        change.request,
        actor=change.actor,
        outcome=change.outcome,
        project=change.project,
        repository=change.repository,
        details={"target": change.target, **change.details},
    )


def to_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the API and the export show it (``details`` decoded)."""
    out = {key: row[key] for key in COLUMNS if key != "details"}
    details = row["details"]
    out["details"] = json.loads(details) if isinstance(details, str) else details
    return out
