"""Pure parts of the replicator: challenges, rule selection, chunking, sizes, config."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from registry.config import ConfigError, ReplicationRuleSettings, load_settings
from replicator.auth import parse_challenge
from replicator.rules import destination, literal_repositories, repository_selected, tag_selected
from replicator.scheduler import lag_seconds
from replicator.streams import ChunkReader, parse_size


def _rule(**kw: object) -> ReplicationRuleSettings:
    return ReplicationRuleSettings.model_validate({"name": "r", "remote": {"url": "x"}, **kw})


def test_bearer_challenge_is_parsed() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    basic = parse_challenge('Basic realm="ref"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("") is None


def test_repository_and_tag_selection() -> None:
    rule = _rule(
        repositories=["team/*", "base"],
        exclude=["team/tmp-*"],
        tags=["v*", "re:release-[0-9]+"],
        excludetags=["*-rc"],
        prefix="/dr/",
    )
    assert repository_selected(rule, "team/app")
    assert repository_selected(rule, "team/sub/app")  # * crosses /
    assert not repository_selected(rule, "team/tmp-1")
    assert not repository_selected(rule, "other/app")
    assert tag_selected(rule, "v1.2") and tag_selected(rule, "release-12")
    assert not tag_selected(rule, "v2-rc")
    assert not tag_selected(rule, "release-x") and not tag_selected(rule, "latest")
    assert tag_selected(_rule(), "anything")
    assert destination(rule, "team/app") == "dr/team/app"
    assert literal_repositories(rule) is None
    assert literal_repositories(_rule(repositories=["a/b", "c"])) == ["a/b", "c"]


async def test_chunk_reader_cuts_a_stream_exactly() -> None:
    async def source() -> AsyncIterator[bytes]:
        for piece in (b"abc", b"defgh", b"", b"ij"):
            yield piece

    reader = ChunkReader(source())
    parts = []
    for _ in range(4):
        parts.append(b"".join([c async for c in reader.take(4)]))
    assert parts == [b"abcd", b"efgh", b"ij", b""]
    assert reader.read == 10


def test_sizes() -> None:
    assert parse_size("16M") == 16 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("") == 0
    with pytest.raises(ValueError):
        parse_size("fast")


def test_lag() -> None:
    scheduled = _rule(schedule="*/5 * * * *")
    assert lag_seconds(scheduled, {"started_at": 100.0}, None, 160.0) == 60.0
    assert lag_seconds(scheduled, None, None, 160.0) == -1.0  # never succeeded
    assert lag_seconds(_rule(onpush=True), None, 150.0, 160.0) == 10.0
    assert lag_seconds(_rule(onpush=True), None, None, 160.0) == 0.0


def test_config_rejects_bad_rules(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yml"
    cfg.write_text("replication:\n  rules:\n    - {name: a, remote: {url: x}, schedule: nope}\n")
    with pytest.raises(ConfigError, match="cron"):
        load_settings(cfg, env={})
    cfg.write_text(
        "replication:\n  rules:\n    - {name: a, remote: {url: x}}\n"
        "    - {name: a, remote: {url: y}}\n"
    )
    with pytest.raises(ConfigError, match="unique"):
        load_settings(cfg, env={})
    cfg.write_text("mirrors:\n  - {prefix: hub, remoteurl: 'https://r', ttl: 10m}\n")
    assert load_settings(cfg, env={}).mirrors[0].prefix == "hub"


async def test_client_follows_link_pages_and_token_challenge() -> None:
    """Catalog pages through ``Link``; a Bearer challenge is answered once per scope."""
    import base64

    import httpx

    from replicator.client import RegistryClient

    tokens: list[str] = []
    names = [f"r{i:02d}" for i in range(5)]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            assert (
                request.headers["authorization"]
                == "Basic " + base64.b64encode(b"robot:pw").decode()
            )
            scope = request.url.params.get("scope", "")
            tokens.append(scope)
            return httpx.Response(200, json={"token": f"tok-{scope}", "expires_in": 300})
        if request.headers.get("authorization", "") != "Bearer tok-registry:catalog:*":
            challenge = (
                'Bearer realm="http://reg.test/token",service="reg",scope="registry:catalog:*"'
            )
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        last = request.url.params.get("last", "")
        page = [n for n in names if n > last][:2]
        headers = {}
        if page and page[-1] != names[-1]:
            headers["Link"] = f'</v2/_catalog?n=2&last={page[-1]}>; rel="next"'
        return httpx.Response(200, json={"repositories": page}, headers=headers)

    client = RegistryClient(
        "http://reg.test", "robot", "pw", transport=httpx.MockTransport(handler)
    )
    async with client:
        assert await client.catalog() == names
        assert await client.catalog() == names
    assert tokens == ["registry:catalog:*"]  # fetched once, then cached
