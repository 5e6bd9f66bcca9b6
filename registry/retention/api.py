"""``/api/projects/NAME/retention...`` and ``/api/retention/pulls`` (JSON).

- ``GET .../retention``: ``{"project", "rules": [...], "schedule", "gc"}``
- ``PUT .../retention`` with ``{"rules": [...], "schedule": "0 3 * * *" | null, "gc": bool}``:
  the whole list replaced (400 ``RETENTION_RULE_INVALID`` naming every field's problem)
- ``POST .../retention/rules`` with one rule: appended (201, the rule with its id)
- ``DELETE .../retention/rules/ID``: removed (200, the rule)
- ``POST .../retention/runs`` with ``{"dry_run": bool, "gc": bool}``: 202 ``{"id", "url"}``;
  409 ``RETENTION_RUNNING`` while one goes on
- ``GET .../retention/runs?n=20``: history, newest first; ``GET .../retention/runs/ID``:
  progress, summary and what goes (would go, for a dry run)
- ``GET /api/retention/pulls?repository=R``: the last pulls of its manifests and tags

Members read, maintainers and owners (and administrators) change and run (the
``access`` given by the projects feature); pulls: whoever may pull the repository.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from registry.api.access import caller_of, may, require_admin
from registry.api.bodies import read_capped
from registry.api.http import json_response
from registry.errors import Denied, NameUnknown, NotFound, Unauthorized, Unsupported
from registry.retention.errors import RetentionRuleInvalid
from registry.retention.rules import rule_from_json, rules_from_json
from registry.retention.runner import Retention
from registry.retention.store import Policy, PullTimes
from registry.schedules import parse_schedule

PREFIX = "/api/projects"
PULLS = "/api/retention"
MAX_BODY = 256 * 1024
_PATH = re.compile(r"^/api/projects/([^/]+)/retention(?:/(rules|runs)(?:/([^/]+))?)?/?$")

# (request scope, project, write): returns if the caller may read (False) or change and run
# (True) the project's retention, else raises Unauthorized or Denied
Access = Callable[[Scope, str, bool], None]


def admins_only(scope: Scope, _project: str, _write: bool) -> None:
    require_admin(scope)


def handles(path: str) -> bool:
    """Is ``path`` one of this API's (for the projects API's prefix)?"""
    return _PATH.match(path) is not None


async def _body(scope: Scope, receive: Receive) -> Any:
    raw = await read_capped(
        Request(scope, receive).stream(),
        MAX_BODY,
        lambda: RetentionRuleInvalid("request body too large"),
    )
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise RetentionRuleInvalid("the body must be JSON") from None


def _policy(data: dict[str, Any], problems: dict[str, Any]) -> Policy:
    schedule = data.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, str):
            problems["schedule"] = "must be a 5-field cron expression or null"
            schedule = None
        else:
            try:
                plan = parse_schedule(schedule)
            except ValueError:
                plan = None
            if plan is None or plan.cron is None:
                problems["schedule"] = (
                    "must be a 5-field cron expression (minute hour day-of-month month "
                    "day-of-week, UTC; e.g. '0 3 * * *') or null"
                )
                schedule = None
            else:
                schedule = plan.cron
    gc = data.get("gc", False)
    if not isinstance(gc, bool):
        problems["gc"] = "must be true or false"
        gc = False
    return Policy(schedule, gc)


def _flag(data: dict[str, Any], name: str, problems: dict[str, str]) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        problems[name] = "must be true or false"
        return False
    return value


def pulls_json(found: PullTimes) -> dict[str, Any]:
    from datetime import UTC, datetime

    def at(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

    return {
        "repository": found.repository,
        "manifests": [{"digest": d, "last_pulled_at": at(t)} for d, t in found.manifests],
        "tags": [
            {"tag": n, "digest": d, "pushed_at": at(p), "last_pulled_at": at(t)}
            for n, d, p, t in found.tags
        ],
    }


class RetentionAPI:
    """The ASGI app of the project retention paths."""

    def __init__(self, retention: Retention, access: Access = admins_only) -> None:
        self.retention = retention
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "retention"
        found = _PATH.match(scope["path"])
        if found is None:
            raise NotFound(detail={"path": scope["path"][:300]})
        project = unquote(found.group(1))
        what, ident = found.group(2), found.group(3)
        method = scope["method"]
        read = method in ("GET", "HEAD")
        self.access(scope, project, not read)
        actor = _actor(scope)
        status = 200
        body: dict[str, Any] = {}
        if what is None:
            if read:
                rules, policy = await self.retention.settings(project)
            elif method == "PUT":
                data = await _body(scope, receive)
                if not isinstance(data, dict):
                    raise RetentionRuleInvalid('the body must be {"rules": [...], ...}')
                problems: dict[str, Any] = {}
                unknown = sorted(set(data) - {"rules", "schedule", "gc"})
                for name in unknown:
                    problems[name] = "unknown field"
                rules, rule_problems = rules_from_json(data.get("rules", []))
                if rule_problems:
                    problems["rules"] = rule_problems
                policy = _policy(data, problems)
                if problems:
                    raise RetentionRuleInvalid("invalid retention rules", detail=problems)
                rules, policy = await self.retention.replace(project, rules, policy, actor)
            else:
                raise Unsupported("use GET or PUT", headers={"Allow": "GET, PUT"})
            body = {
                "project": project,
                "rules": [r.as_json() for r in rules],
                "schedule": policy.schedule,
                "gc": policy.gc,
            }
        elif what == "rules":
            if ident is None and method == "POST":
                rule, problems = rule_from_json(await _body(scope, receive))
                if rule is None:
                    raise RetentionRuleInvalid("invalid retention rule", detail=problems)
                status, body = 201, (await self.retention.add(project, rule)).as_json()
            elif ident is not None and method == "DELETE":
                body = (await self.retention.remove(project, _id(ident))).as_json()
            elif ident is None and read:
                rules, _ = await self.retention.settings(project)
                body = {"project": project, "rules": [r.as_json() for r in rules]}
            else:
                raise Unsupported("POST a rule, DELETE rules/ID", headers={"Allow": "GET, POST"})
        elif ident is None:
            if method == "POST":
                data = await _body(scope, receive)
                if not isinstance(data, dict):
                    raise RetentionRuleInvalid('the body must be {"dry_run": bool, "gc": bool}')
                flags: dict[str, str] = {n: "unknown field" for n in set(data) - {"dry_run", "gc"}}
                dry_run, gc = _flag(data, "dry_run", flags), _flag(data, "gc", flags)
                if flags:
                    raise RetentionRuleInvalid("invalid run request", detail=flags)
                run_id = await self.retention.start(project, dry_run, gc, "api", actor)
                url = f"{PREFIX}/{project}/retention/runs/{run_id}"
                status, body = 202, {"id": run_id, "url": url, "dry_run": dry_run}
            elif read:
                limit = _id(Request(scope).query_params.get("n") or "20", "n")
                body = {"runs": await self.retention.runs(project, min(limit, 500))}
            else:
                raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})
        else:
            if not read:
                raise Unsupported("use GET", headers={"Allow": "GET"})
            body = await self.retention.run(project, _id(ident))
        await json_response(body, status)(scope, receive, send)


class PullsAPI:
    """``GET /api/retention/pulls?repository=R``."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "retention"
        if scope["path"].rstrip("/") != f"{PULLS}/pulls":
            raise NotFound(detail={"path": scope["path"][:300]})
        if scope["method"] not in ("GET", "HEAD"):
            raise Unsupported("use GET", headers={"Allow": "GET"})
        repository = Request(scope).query_params.get("repository") or ""
        if not repository:
            raise RetentionRuleInvalid("repository is required", detail={"repository": "missing"})
        if not may(scope, repository, "pull"):
            caller = caller_of(scope)
            if caller is None or caller.name is None:
                raise Unauthorized("credentials required")
            raise Denied(f"{caller.name} may not pull {repository}")
        found = await self.retention.pulls(repository)
        if found is None:
            raise NameUnknown(detail={"name": repository[:255]})
        await json_response(pulls_json(found))(scope, receive, send)


def _id(text: str, name: str = "id") -> int:
    if not text.isdigit() or len(text) > 12:
        raise RetentionRuleInvalid(f"{name} must be a whole number", detail={name: text[:50]})
    return int(text)


def _actor(scope: Scope) -> str | None:
    caller = caller_of(scope)
    return None if caller is None else caller.name
