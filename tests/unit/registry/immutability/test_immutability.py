"""Immutability without a server: what patterns match, the rules' validation, the rule
changes handed to the trail in their transaction (and not on a refusal), the keeper,
and the guard and hook on a real SQLite database through the metadata store."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection

from registry.errors import RegistryError
from registry.immutability.errors import ImmutableRuleExists, ProjectUnknown, TagImmutable
from registry.immutability.hook import ImmutableKeeper, ImmutableTags
from registry.immutability.rules import Rule, RuleProblems, check_rule, first_match
from registry.immutability.service import ImmutabilityService
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from registry.meta.records import NewManifest
from registry.meta.store import MetadataStore
from registry.meta.trail import AdminChange
from registry.projects import store as project_store

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def rule(repository: str, tag: str, id_: int = 1) -> Rule:
    return Rule(id_, "team", repository, tag, NOW, None)


@pytest.mark.parametrize(
    ("repository", "tag", "matched", "unmatched"),
    [
        ("team/**", "release-*", ["team/app:release-1", "team/a/b:release-"], ["team/app:v1"]),
        ("team/*", "*", ["team/app:x", "team/tools/ci:latest"], ["other/app:x"]),
        ("team/app", "v[0-9]*", ["team/app:v1.2"], ["team/app:latest", "team/app2:v1"]),
        ("*", "latest", ["team/app:latest", "nginx:latest"], ["team/app:Latest"]),
        ("team/app", "v?", ["team/app:v1"], ["team/app:v10", "team/app:v"]),
    ],
)
def test_patterns(repository: str, tag: str, matched: list[str], unmatched: list[str]) -> None:
    r = rule(repository, tag)
    for ref in matched:
        assert r.matches(*ref.split(":")), ref
    for ref in unmatched:
        assert not r.matches(*ref.split(":")), ref


def test_first_match_is_the_oldest_rule() -> None:
    rules = [rule("team/*", "v*", 1), rule("team/app", "*", 2)]
    found = first_match(rules, "team/app", "v1")
    assert found is not None and found.id == 1
    found = first_match(rules, "team/app", "latest")
    assert found is not None and found.id == 2
    assert first_match(rules, "team/other", "latest") is None


def test_check_rule_names_every_problem() -> None:
    assert check_rule({"repository": "team/**", "tag": "release-*"}) == ("team/**", "release-*")
    with pytest.raises(RuleProblems) as e:
        check_rule({"repository": " team", "tag": "a\tb", "x": 1})
    assert set(e.value.problems) == {"repository", "tag", "x"}
    with pytest.raises(RuleProblems) as e:
        check_rule({"repository": None, "tag": "[a"})
    assert e.value.problems == {
        "repository": "must be a string (a glob: release-*, team/**)",
        "tag": "has an unclosed [ set ]",
    }
    with pytest.raises(RuleProblems) as e:
        check_rule("team/**")
    assert list(e.value.problems) == ["body"]


class Recorder:
    def __init__(self) -> None:
        self.changes: list[AdminChange] = []

    def __call__(self, conn: Connection, change: AdminChange) -> None:
        assert conn.in_transaction()
        self.changes.append(change)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    asyncio.run(ensure_schema(url))
    database = Database(url, 1)
    asyncio.run(database.run_write(project_store.ensure_project, "team", None, "test"))
    yield database
    asyncio.run(database.close())


def test_rule_changes_go_to_the_trail(db: Database) -> None:
    trail = Recorder()
    service = ImmutabilityService(db, trail)

    async def scenario() -> None:
        made = await service.add("team", "team/**", "release-*", "mary")
        assert (made.project, made.repository, made.tag, made.created_by) == (
            "team",
            "team/**",
            "release-*",
            "mary",
        )
        with pytest.raises(ImmutableRuleExists):
            await service.add("team", "team/**", "release-*", "mary")
        with pytest.raises(ProjectUnknown):
            await service.add("nope", "team/**", "release-*", "mary")
        assert [r.id for r in await service.rules("team")] == [made.id]
        gone = await service.remove("team", made.id, "olga")
        assert gone.id == made.id
        with pytest.raises(RegistryError) as e:
            await service.remove("team", made.id, "olga")
        assert e.value.code == "IMMUTABLE_RULE_UNKNOWN"
        assert await service.rules("team") == []

    asyncio.run(scenario())
    assert [(c.action, c.target, c.project, c.actor) for c in trail.changes] == [
        ("immutable.rule.create", "1", "team", "mary"),
        ("immutable.rule.delete", "1", "team", "olga"),
    ]
    assert trail.changes[0].details == {"repository": "team/**", "tag": "release-*"}


def manifest(n: int) -> NewManifest:
    """A manifest row referencing nothing (the store checks only what it references)."""
    body = f'{{"n":{n}}}'.encode()
    return NewManifest(
        digest=f"sha256:{hashlib.sha256(body).hexdigest()}",
        media_type="application/vnd.oci.image.manifest.v1+json",
        size=len(body),
        artifact_type=None,
        subject=None,
        annotations=None,
        blobs=(),
        children=(),
    )


def test_guard_and_hook_on_the_store(db: Database) -> None:
    meta = MetadataStore(db)
    tags = ImmutableTags("library")
    meta.add_guard(tags.guard)
    meta.add_hook(tags)
    keeper = ImmutableKeeper()

    async def scenario() -> None:
        await ImmutabilityService(db).add("team", "team/*", "v*", None)
        one, two = manifest(1), manifest(2)
        await meta.put_manifest("team/app", one, "v1")
        await meta.put_manifest("team/app", one, "v1")  # the same digest: no move
        with pytest.raises(TagImmutable) as e:
            await meta.put_manifest("team/app", two, "v1")
        assert e.value.detail["rule"] == {"id": 1, "repository": "team/*", "tag": "v*"}
        found = await meta.resolve("team/app", tag="v1")
        assert found is not None and found.digest == one.digest
        await meta.put_manifest("team/app", two, None)  # by digest: fine
        await meta.put_manifest("team/app", one, "latest")
        await meta.put_manifest("team/app", two, "latest")  # no rule: moves
        with pytest.raises(TagImmutable):
            await meta.delete_tag("team/app", "v1")
        with pytest.raises(TagImmutable):
            await meta.delete_manifest("team/app", one.digest)
        assert await meta.delete_tag("team/app", "latest")
        assert await meta.delete_manifest("team/app", two.digest)
        found = await meta.resolve("team/app", tag="v1")
        assert found is not None and found.digest == one.digest
        kept = await db.run_read(keeper, "team", "team/app", ["v1", "v2", "latest"])
        assert kept == {"v1", "v2"}
        assert await db.run_read(keeper, "library", "nginx", ["v1"]) == set()

    asyncio.run(scenario())
