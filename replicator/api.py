"""``/api/replication``: rules (config and API-made), runs, run now (administrators).

- ``GET    /api/replication/rules``             rules, last run, last success, lag, pending
- ``POST   /api/replication/rules``             add a rule (the fields of a config rule): 201
- ``GET    /api/replication/rules/<name>``      one rule, with its status
- ``PUT    /api/replication/rules/<name>``      replace a rule added through the API
- ``DELETE /api/replication/rules/<name>``      delete a rule added through the API: 204
- ``GET    /api/replication/runs?rule=&limit=`` run history, newest first
- ``POST   /api/replication/rules/<name>/run``  queue a whole run (202); the background
  task of some worker picks it up within a second or two

Rules of the config file are read-only here (409). Credentials are stored (they are
needed to connect) and never returned.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from registry.api.access import caller_of, require_admin
from registry.api.bodies import read_capped
from registry.config import ReplicationRuleSettings
from registry.errors import (
    NotFound,
    ReplicationRuleExists,
    ReplicationRuleInvalid,
    ReplicationRuleReadOnly,
    ReplicationRuleUnknown,
    Unsupported,
)
from replicator.ruleset import RuleError, RuleSet, dump_rule, parse_rule
from replicator.runner import FULL
from replicator.scheduler import lag_seconds
from replicator.store import ReplicationStore

log = logging.getLogger("wharf.replicator")
PREFIX = "/api/replication"
MAX_BODY = 64 * 1024
# status fields of GET's answer, ignored in a PUT or POST body
VIEW_ONLY = frozenset({"source", "last_run", "last_success", "pending_since", "lag_seconds"})


def _rule_view(rule: ReplicationRuleSettings, source: str) -> dict[str, Any]:
    out = rule.model_dump(exclude={"remote"})
    out["remote"] = {
        "url": rule.remote.url,
        "username": rule.remote.username,
        "insecure": rule.remote.insecure,
        "cacert": rule.remote.cacert,
    }
    out["source"] = source
    return out


def _who(scope: Scope) -> str | None:
    caller = caller_of(scope)
    return caller.name if caller is not None else None


class ReplicationAPI:
    """The ASGI app mounted at ``/api/replication``."""

    def __init__(self, rules: RuleSet, store: ReplicationStore) -> None:
        self.rules = rules
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "api-replication"
        require_admin(scope)
        request = Request(scope, receive)
        path = scope["path"][len(PREFIX) :].strip("/")
        method = scope["method"]
        response: Response
        if path == "rules":
            if method == "GET":
                response = await self._list()
            elif method == "POST":
                response = await self._create(request)
            else:
                raise Unsupported("use GET or POST", headers={"Allow": "GET, POST"})
        elif path == "runs":
            if method != "GET":
                raise Unsupported("use GET", headers={"Allow": "GET"})
            response = await self._runs(request)
        elif path.startswith("rules/") and path.endswith("/run"):
            if method != "POST":
                raise Unsupported("use POST", headers={"Allow": "POST"})
            response = await self._trigger(path[len("rules/") : -len("/run")])
        elif path.startswith("rules/"):
            name = path[len("rules/") :]
            if method == "GET":
                response = await self._show(name)
            elif method == "PUT":
                response = await self._replace(name, request)
            elif method == "DELETE":
                response = await self._delete(name, request.scope)
            else:
                raise Unsupported("use GET, PUT or DELETE", headers={"Allow": "GET, PUT, DELETE"})
        else:
            raise NotFound(detail={"path": scope["path"][:300]})
        await response(scope, receive, send)

    # -- reading -------------------------------------------------------------------

    async def _status(self, rules: dict[str, ReplicationRuleSettings]) -> list[dict[str, Any]]:
        last = await self.store.latest(None)
        success = await self.store.latest("ok")
        oldest = await self.store.oldest_pending()
        now = time.time()
        items = []
        for name, rule in rules.items():
            item = _rule_view(rule, self.rules.source(name))
            item["last_run"] = last.get(name)
            item["last_success"] = success.get(name)
            item["pending_since"] = oldest.get(name)
            item["lag_seconds"] = lag_seconds(rule, success.get(name), oldest.get(name), now)
            items.append(item)
        return items

    async def _list(self) -> JSONResponse:
        return JSONResponse({"rules": await self._status(await self.rules.current())})

    async def _show(self, name: str) -> JSONResponse:
        rule = await self._known(name)
        return JSONResponse((await self._status({name: rule}))[0])

    async def _runs(self, request: Request) -> JSONResponse:
        rule = request.query_params.get("rule") or None
        try:
            limit = min(max(int(request.query_params.get("limit", "50")), 1), 1000)
        except ValueError:
            limit = 50
        return JSONResponse({"runs": await self.store.runs(rule, limit)})

    async def _trigger(self, name: str) -> JSONResponse:
        await self._known(name)
        await self.store.add_pending(name, FULL, "")
        return JSONResponse({"rule": name, "queued": True}, status_code=202)

    async def _known(self, name: str) -> ReplicationRuleSettings:
        rule = await self.rules.get(name)
        if rule is None:
            raise self._unknown(name)
        return rule

    @staticmethod
    def _unknown(name: str) -> ReplicationRuleUnknown:
        return ReplicationRuleUnknown(
            f"no replication rule {name[:100]!r}", detail={"rule": name[:200]}
        )

    # -- changing ------------------------------------------------------------------

    async def _body(self, request: Request) -> Any:
        body = await read_capped(
            request.stream(),
            MAX_BODY,
            lambda: ReplicationRuleInvalid(f"request body larger than {MAX_BODY} bytes"),
        )
        try:
            return json.loads(body or b"null")
        except ValueError:
            raise ReplicationRuleInvalid("the body must be a JSON object") from None

    @staticmethod
    def _parse(data: Any) -> ReplicationRuleSettings:
        if isinstance(data, dict):  # a rule as GET shows it may be sent back
            data = {k: v for k, v in data.items() if k not in VIEW_ONLY}
        try:
            return parse_rule(data)
        except RuleError as e:
            raise ReplicationRuleInvalid(str(e), detail={"fields": e.fields}) from None

    def _writable(self, name: str) -> None:
        if name in self.rules.config:
            raise ReplicationRuleReadOnly(
                f"replication rule {name[:100]!r} comes from the config file: change it there",
                detail={"rule": name[:200], "source": "config"},
            )

    async def _create(self, request: Request) -> JSONResponse:
        rule = self._parse(await self._body(request))
        if rule.name in self.rules.config:
            raise ReplicationRuleExists(
                f"a rule of the config file is named {rule.name!r}",
                detail={"rule": rule.name, "source": "config"},
            )
        who = _who(request.scope)
        if not await self.store.create_rule(rule.name, dump_rule(rule), who):
            raise ReplicationRuleExists(
                f"replication rule {rule.name!r} exists already", detail={"rule": rule.name}
            )
        log.info("replication rule %s added by %s", rule.name, who)
        return self._saved(rule, 201)

    async def _replace(self, name: str, request: Request) -> JSONResponse:
        self._writable(name)
        data = await self._body(request)
        if isinstance(data, dict):
            if data.setdefault("name", name) != name:
                raise ReplicationRuleInvalid(
                    "the name in the body differs from the one in the path (rename: add the"
                    " new rule, then delete the old one)",
                    detail={"fields": [{"field": "name", "message": "differs from the path"}]},
                )
            old = await self.rules.get(name)
            remote = data.get("remote")
            if (
                old is not None
                and isinstance(remote, dict)
                and "password" not in remote
                and remote.get("url") == old.remote.url
                and remote.get("username", "") == old.remote.username
            ):
                # GET never shows the password: a GET-edit-PUT keeps the stored one
                remote["password"] = old.remote.password
        rule = self._parse(data)
        who = _who(request.scope)
        if not await self.store.replace_rule(name, dump_rule(rule), who):
            raise self._unknown(name)
        log.info("replication rule %s changed by %s", name, who)
        return self._saved(rule, 200)

    async def _delete(self, name: str, scope: Scope) -> Response:
        self._writable(name)
        if not await self.store.delete_rule(name):
            raise self._unknown(name)
        log.info("replication rule %s deleted by %s", name, _who(scope))
        return Response(status_code=204)

    def _saved(self, rule: ReplicationRuleSettings, status: int) -> JSONResponse:
        return JSONResponse(_rule_view(rule, self.rules.source(rule.name)), status_code=status)
