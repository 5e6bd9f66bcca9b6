"""``/api/gc``: start a run, follow it, read past runs, storage accounting (admins only).

- ``POST /api/gc/runs`` with an optional JSON body ``{"dry_run": true, "delete_untagged":
  false, "grace": "1h", "untagged_age": "72h", "walk": true}``: 202 ``{"id": N}``; 409
  ``GC_RUNNING`` when a run is going on (here or on another node)
- ``GET /api/gc/runs?n=20&before=ID``: past runs, newest first
- ``GET /api/gc/runs/ID``: one run: state, phase and progress, result (counts, bytes,
  durations) when done
- ``GET /api/gc/usage``: per repository the logical size and the bytes only it holds;
  the registry's physical bytes and what GC would reclaim now
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.api.bodies import read_capped
from registry.api.http import json_response
from registry.config import Settings
from registry.errors import GCRunUnknown, InvalidParameter, NotFound, Unsupported
from registry.gc import store_mark, store_runs, store_usage
from registry.gc.runner import GCRunner, options_from_request
from registry.meta.db import Database

PREFIX = "/api/gc"
MAX_BODY = 64 * 1024


def _int(value: str | None, name: str, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidParameter(f"{name} must be a whole number") from None
    if number < 0:
        raise InvalidParameter(f"{name} must not be negative")
    return number


class GCAPI:
    """The ASGI app mounted at ``/api/gc``."""

    def __init__(self, settings: Settings, db: Database, runner: GCRunner) -> None:
        self.settings = settings
        self.db = db
        self.runner = runner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "gc"
        require_admin(scope)
        request = Request(scope, receive)
        method = scope["method"]
        path: str = scope["path"].rstrip("/")
        if path == PREFIX + "/runs":
            if method == "POST":
                body, status = await self._start(request), 202
            elif method == "GET":
                body, status = await self._runs(request), 200
            else:
                raise Unsupported(f"{method} is not allowed here")
        elif path.startswith(PREFIX + "/runs/"):
            if method != "GET":
                raise Unsupported(f"{method} is not allowed here")
            run_id = _int(path.rsplit("/", 1)[1], "run id", None)
            assert run_id is not None
            found = await self.db.run_read(store_runs.get_run, run_id)
            if found is None:
                raise GCRunUnknown(detail={"id": run_id})
            body, status = found, 200
        elif path == PREFIX + "/usage":
            if method != "GET":
                raise Unsupported(f"{method} is not allowed here")
            body, status = await self._usage(), 200
        else:
            raise NotFound(detail={"path": path[:300]})
        await json_response(body, status)(scope, receive, send)

    async def _start(self, request: Request) -> dict[str, Any]:
        raw = await read_capped(
            request.stream(), MAX_BODY, lambda: InvalidParameter("request body too large")
        )
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise InvalidParameter("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise InvalidParameter("the body must be a JSON object")
        options = options_from_request(self.settings, body)
        run_id = await self.runner.start(options, "api")
        return {"id": run_id, "url": f"{PREFIX}/runs/{run_id}", "dry_run": options.dry_run}

    async def _runs(self, request: Request) -> dict[str, Any]:
        limit = _int(request.query_params.get("n"), "n", 20)
        assert limit is not None
        before = _int(request.query_params.get("before"), "before", None)
        runs = await self.db.run_read(store_runs.list_runs, min(max(limit, 1), 1000), before)
        return {"runs": runs}

    async def _usage(self) -> dict[str, Any]:
        grace = self.settings.gc.grace
        opts = store_mark.MarkOptions(cutoff=time.time() - grace)
        result: dict[str, Any] = await self.db.run_read(store_usage.usage, opts, self.runner.roots)
        return result
