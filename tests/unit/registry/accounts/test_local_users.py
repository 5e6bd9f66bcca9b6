"""Local users (``auth.local``): password rules and hashing, the store and use cases on a
real SQLite database, the login cache with a clock the tests move, and where local
users come in the order of the login sources (with the throttle)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auth.htpasswd import Htpasswd, hash_password
from auth.ldap import LdapUser
from auth.logins import LocalAccount, Logins
from auth.policy import Identity, Policy
from auth.throttle import LoginThrottle, TooManyAttempts
from registry.accounts import passwords
from registry.accounts import user_logins as user_logins_module
from registry.accounts.errors import UserExists, UserFieldsInvalid
from registry.accounts.setup import reserved_names
from registry.accounts.user_logins import UserLogins
from registry.accounts.users import UserAccounts
from registry.config import Settings
from registry.meta.db import Database
from registry.meta.migrate import ensure_schema
from tests.unit.auth.test_throttle import Clock, Waits

# --- passwords ------------------------------------------------------------------------


def test_password_rules() -> None:
    assert passwords.password_problem("12345678", 8) is None
    assert "at least 8" in str(passwords.password_problem("1234567", 8))
    assert passwords.password_problem("x" * 72, 8) is None
    # bcrypt reads 72 bytes: a longer password (in UTF-8 bytes) is refused, not cut
    assert "72 bytes" in str(passwords.password_problem("x" * 73, 8))
    assert "72 bytes" in str(passwords.password_problem("é" * 37, 8))  # 74 bytes
    assert "NUL" in str(passwords.password_problem("abcdefgh\0", 8))
    assert passwords.password_problem(12345678, 8) == "must be a string"


def test_hashing() -> None:
    hashed = passwords.hash_password("right-password", cost=4)
    assert hashed.startswith("$2b$04$") and "right-password" not in hashed
    assert passwords.verify_password("right-password", hashed)
    assert not passwords.verify_password("wrong-password", hashed)
    # a hash made by a tool that cut the password at 72 bytes is not matched by more
    cut = passwords.hash_password("x" * 72, cost=4)
    assert not passwords.verify_password("x" * 80, cut)
    assert not passwords.verify_password("anything", "not a hash")
    assert passwords.COST == 12


def test_local_settings() -> None:
    s = Settings.model_validate({"auth": {"local": {}}})
    assert s.auth.mode == "htpasswd" and s.auth.local is not None
    assert s.auth.local.selfregistration is False and s.auth.local.minpasswordlength == 8
    assert s.auth.local.refresh_seconds == 30
    assert Settings.model_validate({}).auth.local is None  # no auth: open, no logins
    for bad in ({"minpasswordlength": 0}, {"minpasswordlength": 73}, {"refresh": "soon"}):
        with pytest.raises(ValueError):
            Settings.model_validate({"auth": {"local": bad}})


# --- the store and the use cases --------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wharf.db'}"
    await ensure_schema(url)
    database = Database(url)
    yield database
    await database.close()


@pytest.fixture
def reserved(tmp_path: Path) -> Htpasswd:
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{hash_password('alice-pw', rounds=4)}\n")
    return Htpasswd(path)


async def test_create_list_update_delete(db: Database, reserved: Htpasswd) -> None:
    changed: list[str] = []
    users = UserAccounts(db, 8, reserved_names(reserved), changed.append, cost=4)
    made = await users.create("dana", "dana-password", "dana@example.org", True, "cli")
    assert made.admin and made.created_by == "cli" and not made.disabled
    with pytest.raises(UserExists):
        await users.create("dana", "other-password")
    with pytest.raises(UserFieldsInvalid) as bad:
        await users.create("alice", "short", "nope", "yes")
    assert set(bad.value.problems) == {"name", "password", "email", "admin"}
    assert "htpasswd" in bad.value.problems["name"]
    for name in ("erin", "carl", "bea"):
        await users.create(name, "some-password")
    assert [u.name for u in await users.page()] == ["bea", "carl", "dana", "erin"]
    assert [u.name for u in await users.page(2, "bea")] == ["carl", "dana"]
    updated = await users.update("dana", {"disabled": True, "email": ""})
    assert updated is not None and updated.disabled and updated.email == ""
    assert updated.password_changed_at == made.password_changed_at  # no new password
    with pytest.raises(UserFieldsInvalid) as bad:
        await users.update("dana", {"admin": "no", "password": "x", "colour": "red"})
    assert set(bad.value.problems) == {"admin", "password", "colour"}
    after = await users.get("dana")
    assert after is not None and after.admin  # the refused update changed nothing
    assert await users.update("nobody", {"admin": True}) is None
    assert await users.delete("dana") and not await users.delete("dana")
    assert await users.get("dana") is None
    assert changed.count("dana") == 4  # create, update, 2 deletes: the logins forget dana


async def test_own_password_change(db: Database) -> None:
    users = UserAccounts(db, 8, cost=4)
    await users.create("fred", "fred-password-1")
    with pytest.raises(UserFieldsInvalid) as bad:
        await users.change_password("fred", "fred-password-1", "fred-password-1")
    assert set(bad.value.problems) == {"new_password"}
    assert not await users.change_password("fred", "not-the-password", "fred-password-2")
    assert await users.change_password("fred", "fred-password-1", "fred-password-2")
    assert not await users.change_password("fred", "fred-password-1", "fred-password-3")
    logins = UserLogins(db, cost=4)
    assert (await logins.check("fred", "fred-password-2"))[1] is not None
    assert (await logins.check("fred", "fred-password-1")) == (True, None)


# --- the login cache ----------------------------------------------------------------------


async def test_verified_credentials_are_cached_within_refresh(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    logins = UserLogins(db, refresh=30, cost=4, clock=clock)
    here = UserAccounts(db, 8, on_change=logins.forget, cost=4)  # this worker
    elsewhere = UserAccounts(db, 8, cost=4)  # another worker, node or `wharf user`
    await here.create("gina", "gina-password", admin=True)
    bcrypts: list[str] = []
    real = passwords.verify_password

    def counted(password: str, hashed: str) -> bool:
        bcrypts.append(password)
        return real(password, hashed)

    monkeypatch.setattr(user_logins_module, "verify_password", counted)

    assert logins.cached("gina", "gina-password") is None
    assert await logins.check("gina", "gina-password") == (True, LocalAccount("gina", True))
    assert logins.cached("gina", "gina-password") == LocalAccount("gina", True)
    assert logins.admin("gina") and logins.cached("gina", "wrong") is None
    # past refresh: the row is read again, and the same hash needs no bcrypt
    clock.now += 31
    assert logins.cached("gina", "gina-password") is None
    assert logins.seen_before("gina", "gina-password")
    assert (await logins.check("gina", "gina-password"))[1] is not None
    assert bcrypts == ["gina-password"]
    # disabled elsewhere: still answered until refresh, then refused
    await elsewhere.update("gina", {"disabled": True})
    clock.now += 29
    assert logins.cached("gina", "gina-password") is not None
    clock.now += 2
    assert logins.cached("gina", "gina-password") is None
    assert await logins.check("gina", "gina-password") == (True, None)
    # re-enabled and re-passworded here: the old password stops at once
    await here.update("gina", {"disabled": False})
    assert (await logins.check("gina", "gina-password"))[1] is not None
    await here.update("gina", {"password": "gina-password-2"})
    assert logins.cached("gina", "gina-password") is None
    assert await logins.check("gina", "gina-password") == (True, None)
    assert not logins.seen_before("gina", "gina-password")
    await here.delete("gina")
    assert await logins.check("gina", "gina-password-2") == (False, None)
    assert bcrypts[-1] == "gina-password-2"  # an unknown name costs a bcrypt check too


# --- the order of the sources, and the throttle ------------------------------------------


class FakeLocal:
    """A LocalSource with two users, counting its checks."""

    def __init__(self) -> None:
        self.users = {"lou": ("lou-pw", True), "alice": ("local-alice-pw", False)}
        self.verified: set[tuple[str, str]] = set()  # fresh in the cache
        self.seen: set[tuple[str, str]] = set()  # verified once
        self.checks: list[str] = []

    def cached(self, user: str, password: str) -> LocalAccount | None:
        if (user, password) in self.verified:
            return LocalAccount(user, self.users[user][1])
        return None

    def seen_before(self, user: str, password: str) -> bool:
        return (user, password) in self.seen

    def admin(self, user: str) -> bool:
        return user in self.users and self.users[user][1]

    async def check(self, user: str, password: str) -> tuple[bool, LocalAccount | None]:
        self.checks.append(user)
        if user not in self.users:
            return False, None
        if self.users[user][0] != password:
            return True, None
        self.verified.add((user, password))
        self.seen.add((user, password))
        return True, LocalAccount(user, self.users[user][1])


def _logins(tmp_path: Path, clock: Clock, **limits: int) -> tuple[Logins, FakeLocal, Waits]:
    path = tmp_path / "htpasswd"
    path.write_text(f"alice:{hash_password('alice-pw', rounds=4)}\n")
    throttle = LoginThrottle(clock=clock, **limits)
    waits = Waits(clock)
    logins = Logins(Policy(), throttle, Htpasswd(path), sleep=waits)
    local = FakeLocal()
    logins.local, logins.local_enabled = local, True

    async def robots(name: str, secret: str) -> list[str] | None:
        return ["ci"] if (name, secret) == ("robot$ci", "s3cret") else None

    logins.robots = robots
    return logins, local, waits


def test_the_order_of_the_sources(tmp_path: Path) -> None:
    logins, local, _ = _logins(tmp_path, Clock())

    async def run() -> None:
        found = await logins.login("robot$ci", "s3cret", "A")
        assert found is not None and found.source == "robot"
        # alice is in the htpasswd file: the file answers, the database is not asked
        found = await logins.login("alice", "alice-pw", "A")
        assert found is not None and found.source == "htpasswd"
        assert await logins.login("alice", "local-alice-pw", "A") is None
        assert local.checks == []
        found = await logins.login("lou", "lou-pw", "A")
        assert found is not None and found.source == "local"
        assert found.identity == Identity("lou", admin=True)
        assert logins.policy.is_admin(found.identity)
        assert logins.identity("lou").admin  # a bearer token's subject
        assert await logins.login("lou", "wrong", "A") is None
        assert await logins.login("nobody", "x", "A") is None  # no LDAP: refused
        assert local.checks == ["lou", "lou", "nobody"]
        assert logins.source_of("robot$x") == "robot" and logins.source_of("zed") == "local"

    asyncio.run(run())


def test_cached_local_credentials_pass_a_full_throttle(tmp_path: Path) -> None:
    clock = Clock()
    logins, local, waits = _logins(tmp_path, clock, free=0, max_inflight_user=1)

    async def run() -> None:
        assert await logins.login("lou", "lou-pw", "A") is not None
        local.verified.clear()  # the cache entry expired: seen before, not cached
        logins.throttle.failed("x", "A")  # A is no clean address
        waits.hold = asyncio.Event()
        guess = asyncio.ensure_future(logins.login("lou", "guess", "A"))
        await waits.until(1)  # the guess is counted and waits, holding lou's one slot
        with pytest.raises(TooManyAttempts):
            await logins.login("lou", "guess-2", "A")
        # seen before: checked again, not held to the user's bound
        found = await logins.login("lou", "lou-pw", "A")
        assert found is not None and found.source == "local"
        assert local.checks == ["lou", "lou", "lou"]
        # cached again: answered with no check and no slot
        assert await logins.login("lou", "lou-pw", "A") is not None
        assert local.checks == ["lou", "lou", "lou"]
        waits.hold.set()
        assert await guess is None

    asyncio.run(run())


class FakeLdap:
    """The part of LdapAuthenticator that Logins uses, with one user: lee."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def cached(self, user: str, password: str) -> LdapUser | None:
        return None

    def seen_before(self, user: str, password: str) -> bool:
        return False

    def cached_groups(self, name: str) -> frozenset[str]:
        return frozenset()

    async def authenticate(self, user: str, password: str) -> LdapUser | None:
        self.asked.append(user)
        if (user, password) == ("lee", "lee-pw"):
            return LdapUser("lee", "uid=lee,dc=x", frozenset({"devs"}))
        return None


def test_names_the_database_does_not_know_go_to_ldap(tmp_path: Path) -> None:
    logins, local, _ = _logins(tmp_path, Clock())
    ldap = FakeLdap()
    logins.ldap = ldap  # type: ignore[assignment]
    seen: list[str] = []
    logins.observe = lambda source, result, _s: seen.append(f"{source}:{result}")

    async def run() -> None:
        found = await logins.login("lee", "lee-pw", "A")
        assert found is not None and found.source == "ldap" and "devs" in found.identity.groups
        # a local user's wrong password is not tried in LDAP
        assert await logins.login("lou", "lee-pw", "A") is None
        found = await logins.login("lou", "lou-pw", "A")
        assert found is not None and found.source == "local"
        assert await logins.login("nobody", "x", "A") is None

    asyncio.run(run())
    assert local.checks == ["lee", "lou", "lou", "nobody"]
    assert ldap.asked == ["lee", "nobody"]
    assert seen == ["ldap:success", "local:failure", "local:success", "ldap:failure"]
