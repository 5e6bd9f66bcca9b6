"""``/api/scrub``: start a run, follow it, stop it, read the quarantine (admins only).

- ``POST /api/scrub/runs`` with an optional JSON body ``{"rate": "50MiB", "resume":
  true}``: 202 ``{"id": N, "url": ...}``; 409 ``SCRUB_RUNNING`` when a run is going on
  (here or on another node); 400 ``SCRUB_INVALID`` with every field's problem
- ``GET /api/scrub/runs?n=20&before=ID``: past runs, newest first
- ``GET /api/scrub/runs/ID``: one run: state, cursor, checked (objects, bytes) of total,
  bad
- ``POST /api/scrub/runs/ID/stop``: stop a run of the process answering (202), its
  cursor saved (a run elsewhere: 409; a run not going on: 404)
- ``GET /api/scrub/quarantine?n=100&last=DIGEST``: quarantined digests (reason,
  kind, when, detail, repositories holding them) in digest order, and their total
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from registry.api.access import require_admin
from registry.api.bodies import read_capped
from registry.api.http import json_response
from registry.config import parse_rate
from registry.errors import InvalidParameter, NotFound, Unsupported
from registry.meta.db import Database
from registry.scrub import store_runs
from registry.scrub.errors import ScrubInvalid, ScrubRunning, ScrubRunUnknown
from registry.scrub.runner import ScrubRunner

PREFIX = "/api/scrub"
MAX_BODY = 64 * 1024


def _int(value: str | None, name: str, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidParameter(f"{name} must be a whole number", detail={name: value}) from None
    if number < 0:
        raise InvalidParameter(f"{name} must not be negative", detail={name: value})
    return number


def options_from_request(body: Any) -> tuple[int | None, bool]:
    """``rate`` and ``resume`` of a ``POST /api/scrub/runs`` body; :class:`ScrubInvalid`
    naming every field's problem."""
    if not isinstance(body, dict):
        raise ScrubInvalid("the body must be a JSON object")
    problems: dict[str, str] = {}
    for key in sorted(set(body) - {"rate", "resume"}):
        problems[str(key)[:100]] = "unknown option"
    rate: int | None = None
    if body.get("rate") is not None:
        try:
            rate = parse_rate(body["rate"])
        except (ValueError, TypeError) as e:
            problems["rate"] = str(e)
    resume = body.get("resume", False)
    if not isinstance(resume, bool):
        problems["resume"] = "must be true or false"
    if problems:
        raise ScrubInvalid(
            "invalid scrub options: "
            + "; ".join(f"{field}: {problem}" for field, problem in problems.items()),
            detail=problems,
        )
    return rate, resume


class ScrubAPI:
    """The ASGI app mounted at ``/api/scrub``."""

    def __init__(self, db: Database, runner: ScrubRunner) -> None:
        self.db = db
        self.runner = runner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "scrub"
        require_admin(scope)
        request = Request(scope, receive)
        method = scope["method"]
        path: str = scope["path"].rstrip("/")
        status = 200
        body: dict[str, Any]
        if path == PREFIX + "/runs":
            if method == "POST":
                body, status = await self._start(request), 202
            elif method == "GET":
                body = await self._runs(request)
            else:
                raise Unsupported(f"{method} is not allowed here")
        elif path.startswith(PREFIX + "/runs/"):
            rest = path[len(PREFIX + "/runs/") :].split("/")
            run_id = _int(rest[0], "run id", None)
            assert run_id is not None
            if len(rest) == 2 and rest[1] == "stop":
                if method != "POST":
                    raise Unsupported(f"{method} is not allowed here")
                body, status = await self._stop(run_id), 202
            elif len(rest) == 1:
                if method != "GET":
                    raise Unsupported(f"{method} is not allowed here")
                body = await self._run(run_id)
            else:
                raise NotFound(detail={"path": path[:300]})
        elif path == PREFIX + "/quarantine":
            if method != "GET":
                raise Unsupported(f"{method} is not allowed here")
            body = await self._quarantine(request)
        else:
            raise NotFound(detail={"path": path[:300]})
        await json_response(body, status)(scope, receive, send)

    async def _start(self, request: Request) -> dict[str, Any]:
        raw = await read_capped(
            request.stream(), MAX_BODY, lambda: ScrubInvalid("request body too large")
        )
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ScrubInvalid("the body must be a JSON object") from None
        rate, resume = options_from_request(body)
        run_id = await self.runner.start("api", rate=rate, resume=resume)
        return {"id": run_id, "url": f"{PREFIX}/runs/{run_id}"}

    async def _run(self, run_id: int) -> dict[str, Any]:
        found: dict[str, Any] | None = await self.db.run_read(store_runs.get_run, run_id)
        if found is None:
            raise ScrubRunUnknown(detail={"id": run_id})
        return found

    async def _stop(self, run_id: int) -> dict[str, Any]:
        found = await self._run(run_id)
        if found["state"] != "running":
            raise ScrubRunUnknown(f"scrub run {run_id} is not running", detail={"id": run_id})
        if not self.runner.stop(run_id):
            raise ScrubRunning(
                f"scrub run {run_id} runs in another process ({found['holder']})",
                detail={"id": run_id, "holder": found["holder"]},
            )
        return {"id": run_id, "stopping": True}

    async def _runs(self, request: Request) -> dict[str, Any]:
        limit = _int(request.query_params.get("n"), "n", 20)
        assert limit is not None
        before = _int(request.query_params.get("before"), "before", None)
        runs = await self.db.run_read(store_runs.list_runs, min(max(limit, 1), 1000), before)
        return {"runs": runs}

    async def _quarantine(self, request: Request) -> dict[str, Any]:
        limit = _int(request.query_params.get("n"), "n", 100)
        assert limit is not None
        last = request.query_params.get("last") or ""
        result: dict[str, Any] = await self.db.run_read(
            store_runs.quarantined, min(max(limit, 1), 1000), last[:150]
        )
        return result
