"""``/api/replication``: rules with their last run and lag, run history, run now (admin).

- ``GET  /api/replication/rules``               rules, last run, last success, lag, pending
- ``GET  /api/replication/runs?rule=&limit=``   run history, newest first
- ``POST /api/replication/rules/<name>/run``    queue a whole run (202); the background
  task of some worker picks it up within a second or two
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.config import ReplicationRuleSettings
from registry.errors import NotFound, Unsupported
from registry.meta.replication import ReplicationStore
from replicator.runner import FULL
from replicator.scheduler import lag_seconds

PREFIX = "/api/replication"


def _rule_view(rule: ReplicationRuleSettings) -> dict[str, Any]:
    out = rule.model_dump(exclude={"remote"})
    out["remote"] = {"url": rule.remote.url, "username": rule.remote.username}
    return out


class ReplicationAPI:
    """The ASGI app mounted at ``/api/replication``."""

    def __init__(self, rules: list[ReplicationRuleSettings], store: ReplicationStore) -> None:
        self.rules = {r.name: r for r in rules}
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "api-replication"
        require_admin(scope)
        request = Request(scope, receive)
        path = scope["path"][len(PREFIX) :].strip("/")
        method = scope["method"]
        if path == "rules" and method == "GET":
            response = await self._rules()
        elif path == "runs" and method == "GET":
            response = await self._runs(request)
        elif path.startswith("rules/") and path.endswith("/run") and method == "POST":
            response = await self._trigger(path[len("rules/") : -len("/run")])
        elif path in ("rules", "runs") or path.startswith("rules/"):
            raise Unsupported(f"method {method} is not allowed here")
        else:
            raise NotFound(detail={"path": scope["path"][:300]})
        await response(scope, receive, send)

    async def _rules(self) -> JSONResponse:
        last = await self.store.latest(None)
        success = await self.store.latest("ok")
        oldest = await self.store.oldest_pending()
        now = time.time()
        items = []
        for name, rule in self.rules.items():
            item = _rule_view(rule)
            item["last_run"] = last.get(name)
            item["last_success"] = success.get(name)
            item["pending_since"] = oldest.get(name)
            item["lag_seconds"] = lag_seconds(rule, success.get(name), oldest.get(name), now)
            items.append(item)
        return JSONResponse({"rules": items})

    async def _runs(self, request: Request) -> JSONResponse:
        rule = request.query_params.get("rule") or None
        try:
            limit = min(max(int(request.query_params.get("limit", "50")), 1), 1000)
        except ValueError:
            limit = 50
        return JSONResponse({"runs": await self.store.runs(rule, limit)})

    async def _trigger(self, name: str) -> JSONResponse:
        if name not in self.rules:
            raise NotFound(f"no replication rule {name!r}", detail={"rule": name[:200]})
        await self.store.add_pending(name, FULL, "")
        return JSONResponse({"rule": name, "queued": True}, status_code=202)
