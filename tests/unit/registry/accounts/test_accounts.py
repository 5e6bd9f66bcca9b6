"""LDAP settings, the login sources, robot names, secrets and expiry (no server)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from auth.logins import Logins
from auth.policy import Policy
from auth.throttle import LoginThrottle
from registry.accounts import records as acc
from registry.accounts.errors import RobotNameInvalid
from registry.accounts.robots import parse_expiry
from registry.config import ConfigError, Settings, load_settings

LDAP = {"url": "ldap://127.0.0.1:1", "userbase": "ou=people,dc=x", "binddn": "cn=svc,dc=x"}


def test_ldap_alone_means_basic_mode() -> None:
    env = {
        "REGISTRY_AUTH_LDAP_URL": "ldaps://h:636",
        "REGISTRY_AUTH_LDAP_USERDN": "uid={user},dc=x",
    }
    s = load_settings(env=env)
    assert s.auth.mode == "htpasswd" and s.auth.ldap is not None
    assert s.auth.ldap.urls == ["ldaps://h:636"]
    assert s.auth.ldap.refresh_seconds == 300 and s.auth.ldap.timeout_seconds == 5


def test_bind_password_is_not_printed() -> None:
    env = {f"REGISTRY_AUTH_LDAP_{k}": v for k, v in LDAP.items()} | {
        "REGISTRY_AUTH_LDAP_BINDPASSWORD": "s3cr3t-svc"
    }
    s = load_settings(env={k.upper(): v for k, v in env.items()})
    assert s.auth.ldap is not None and s.auth.ldap.bindpassword == "s3cr3t-svc"
    assert "s3cr3t-svc" not in str(s.model_dump())


@pytest.mark.parametrize(
    "extra",
    [
        {"userbase": ""},  # neither userdn nor userbase
        {"binddn": ""},  # a search needs the service account
        {"userdn": "uid=alice,dc=x"},  # no {user}
        {"groupkinds": ["nisNetgroup"]},
        {"refresh": "soon"},
        {"url": []},
        {"url": "http://ldap.example.org"},
    ],
)
def test_bad_ldap_settings_are_refused(extra: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Settings.model_validate({"auth": {"ldap": {**LDAP, **extra}}})


def test_unknown_auth_methods_still_refused() -> None:
    with pytest.raises(ConfigError):
        load_settings(env={"REGISTRY_AUTH_SILLY_REALM": "x"})


def test_robot_names() -> None:
    assert acc.full_name("ci") == "robot$ci"
    assert acc.full_name("robot$ci-1.a_b") == "robot$ci-1.a_b"
    for bad in ("", "robot$", "Ci", "-ci", "a" * 64, "ci/x", "c i", "ci$"):
        with pytest.raises(RobotNameInvalid):
            acc.full_name(bad)
    assert acc.check_groups(["b", "a", "a"]) == ("a", "b")
    with pytest.raises(RobotNameInvalid):
        acc.check_groups(["*)(cn=*"])


def test_secrets_are_random_and_hashed() -> None:
    one, two = acc.new_secret(), acc.new_secret()
    assert one != two and len(one) == 43
    assert acc.hash_secret(one) != acc.hash_secret(two)
    assert len(acc.hash_secret(one)) == 64 and one not in acc.hash_secret(one)


def test_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("1d12h", now) == now + timedelta(hours=36)
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    assert parse_expiry("never", now) is None and parse_expiry(None, now) is None
    for bad in ("soon", "-1d", "d"):
        with pytest.raises(ValueError):
            parse_expiry(bad, now)


def test_source_is_chosen_by_name() -> None:
    seen: list[tuple[str, str]] = []

    async def robots(name: str, secret: str) -> list[str] | None:
        seen.append((name, secret))
        return ["ci"] if secret == "s3cret" else None

    logins = Logins(Policy(open_to_authenticated=True), LoginThrottle(), robots=robots)
    found = asyncio.run(logins.login("robot$ci", "s3cret", "10.0.0.1"))
    assert found is not None and found.source == "robot"
    assert found.identity.name == "robot$ci" and found.identity.groups == {"ci"}
    assert asyncio.run(logins.login("robot$ci", "wrong", "10.0.0.1")) is None
    # no htpasswd and no LDAP: a person cannot log in at all
    assert asyncio.run(logins.login("alice", "pw", "10.0.0.1")) is None
    assert seen == [("robot$ci", "s3cret"), ("robot$ci", "wrong")]
