"""The rules in force (config plus stored) and the checks on rules sent to the API."""

from __future__ import annotations

from typing import Any, cast

import pytest

from registry.config import ReplicationRuleSettings
from replicator.ruleset import RuleError, RuleSet, dump_rule, parse_rule
from replicator.store import ReplicationStore


def _rule(name: str, url: str = "http://b", **extra: Any) -> ReplicationRuleSettings:
    return ReplicationRuleSettings.model_validate({"name": name, "remote": {"url": url}, **extra})


def test_config_rules_hide_stored_ones_of_the_same_name() -> None:
    rules = RuleSet([_rule("static")], cast(ReplicationStore, None))
    stored = {
        "static": dump_rule(_rule("static", "http://elsewhere")),
        "added": dump_rule(_rule("added", onpush=True)),
        "broken": '{"name": "broken"}',  # no remote: skipped, not fatal
    }
    merged = rules.merge(stored)
    assert list(merged) == ["static", "added"]
    assert merged["static"].remote.url == "http://b"
    assert merged["added"].onpush
    assert rules.source("static") == "config" and rules.source("added") == "api"


def test_stored_json_keeps_the_password_and_reads_back_equal() -> None:
    rule = _rule("r", tags=["re:v[0-9]+"], bandwidth="10M")
    rule.remote.password = "pw"
    assert ReplicationRuleSettings.model_validate_json(dump_rule(rule)) == rule


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "ok", "remote": {"url": "http://x"}, "excludetags": ["re:[a"]}, "excludetags"),
        ({"name": "ok", "remote": {"url": "http://x"}, "chunksize": "big"}, "chunksize"),
        ({"name": "-dash", "remote": {"url": "http://x"}}, "name"),
        ({"name": "ok", "remote": {"url": "x"}}, "remote.url"),
        ({"name": "ok", "remote": {"url": "http://x"}, "typo": 1}, "typo"),
    ],
)
def test_parse_rule_names_the_bad_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rule(body)
    assert [f["field"] for f in err.value.fields] == [field]


def test_parse_rule_accepts_what_the_config_accepts() -> None:
    body = {
        "name": "to-dr.1",
        "remote": {"url": "https://dr.example", "username": "u", "password": "p"},
        "direction": "pull",
        "tags": ["v*", "re:release-[0-9]+"],
        "schedule": "*/15 * * * *",
        "bandwidth": "50M",
    }
    rule = parse_rule(body)
    assert rule.direction == "pull" and rule.remote.password == "p"
