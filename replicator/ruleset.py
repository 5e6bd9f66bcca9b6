"""The rules in force: those of the config file (read-only) and those added through the
API (rows of ``replication_rules``), read from the database whenever they are needed, so
every worker and node sees a change at its next tick, push or request.

A stored rule whose name a config rule has (the config changed after the rule was added)
is hidden: the config wins.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from pydantic import ValidationError

from registry.config import RemoteSettings, ReplicationRuleSettings
from replicator.store import ReplicationStore
from replicator.streams import parse_size

log = logging.getLogger("wharf.replicator")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
CONFIG, API = "config", "api"


class RuleError(ValueError):
    """A rule given through the API that cannot be used; ``fields`` says which parts."""

    def __init__(self, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []


def _unknown_keys(data: dict[str, Any], model: type[Any], where: str) -> list[str]:
    known = set(model.model_fields)
    return [f"{where}{k}" for k in data if k not in known]


def parse_rule(data: Any) -> ReplicationRuleSettings:
    """A rule from an API body: the fields of a config rule, checked further than the
    config loader does (no unknown keys, a usable name, URL, sizes and tag regexes)."""
    if not isinstance(data, dict):
        raise RuleError("the body must be a JSON object")
    unknown = _unknown_keys(data, ReplicationRuleSettings, "")
    if isinstance(data.get("remote"), dict):
        unknown += _unknown_keys(data["remote"], RemoteSettings, "remote.")
    if unknown:
        raise RuleError(
            f"unknown field(s): {', '.join(unknown)[:300]}",
            [{"field": k[:100], "message": "unknown field"} for k in unknown[:20]],
        )
    try:
        rule = ReplicationRuleSettings.model_validate(data)
    except ValidationError as e:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"])[:100], "message": err["msg"][:300]}
            for err in e.errors()[:20]
        ]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        raise RuleError(f"invalid rule: {summary}"[:500], fields) from None
    problems: list[dict[str, str]] = []
    if not NAME.match(rule.name):
        problems.append(
            {"field": "name", "message": "1 to 100 of A-Z a-z 0-9 . _ -, starting alphanumeric"}
        )
    if not re.match(r"^https?://[^/\s]+", rule.remote.url):
        problems.append({"field": "remote.url", "message": "must be an http:// or https:// URL"})
    for key in ("bandwidth", "chunksize"):
        try:
            parse_size(getattr(rule, key))
        except ValueError as e:
            problems.append({"field": key, "message": str(e)[:200]})
    for key in ("tags", "excludetags"):
        for pattern in getattr(rule, key):
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as e:
                    problems.append({"field": key, "message": f"{pattern[:100]!r}: {e}"})
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise RuleError(f"invalid rule: {summary}"[:500], problems)
    return rule


def dump_rule(rule: ReplicationRuleSettings) -> str:
    """The JSON stored for a rule (credentials included: they are needed to connect)."""
    return json.dumps(rule.model_dump(mode="json"), sort_keys=True)


class RuleSet:
    """Config rules plus stored ones; stored JSON is parsed once per distinct text."""

    def __init__(self, config: list[ReplicationRuleSettings], store: ReplicationStore) -> None:
        self.config = {r.name: r for r in config}
        self.store = store
        self._parsed: dict[str, ReplicationRuleSettings | None] = {}

    def source(self, name: str) -> str:
        return CONFIG if name in self.config else API

    def merge(self, stored: dict[str, str]) -> dict[str, ReplicationRuleSettings]:
        """Config rules, then the stored ones (by name) that no config rule hides."""
        rules = dict(self.config)
        for name, spec in stored.items():
            if name in rules:
                continue
            rule = self._parse(name, spec)
            if rule is not None:
                rules[name] = rule
        return rules

    def _parse(self, name: str, spec: str) -> ReplicationRuleSettings | None:
        # also called by the on-push hook in writer threads: one dict get and set each
        if spec in self._parsed:
            return self._parsed.get(spec)
        rule: ReplicationRuleSettings | None = None
        try:
            rule = ReplicationRuleSettings.model_validate_json(spec)
        except ValidationError as e:
            log.error("stored replication rule %s is unusable, skipped: %s", name, e)
        if len(self._parsed) > 1000:
            self._parsed = {}
        self._parsed[spec] = rule
        return rule

    async def current(self) -> dict[str, ReplicationRuleSettings]:
        """Every rule in force now."""
        return self.merge(await self.store.rules())

    async def get(self, name: str) -> ReplicationRuleSettings | None:
        if name in self.config:
            return self.config[name]
        spec = await self.store.rule(name)
        return self._parse(name, spec) if spec is not None else None
