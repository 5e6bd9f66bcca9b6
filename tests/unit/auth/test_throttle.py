"""The login throttle and the guessing rules of Logins, with a clock the tests move."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path

import pytest

from auth.htpasswd import Htpasswd, hash_password
from auth.logins import Login, Logins
from auth.policy import Policy
from auth.throttle import LoginThrottle, TooManyAttempts
from registry.accounts.setup import build_ldap
from registry.config import LdapSettings
from tests.support.slapd import Slapd, ldap_settings, password


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Waits:
    """The ``sleep`` of Logins: records each wait; while ``hold`` is set, a wait lasts
    until it is released (the attempt stays in flight)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seen: list[float] = []
        self.hold: asyncio.Event | None = None
        self._waited = asyncio.Event()

    async def until(self, n: int) -> None:
        """Until ``n`` waits have begun (TimeoutError after 10 s)."""
        async with asyncio.timeout(10):
            while len(self.seen) < n:
                self._waited.clear()
                await self._waited.wait()

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)
        self._waited.set()
        if self.hold is not None:
            await self.hold.wait()
        self.clock.now += seconds


# --- the throttle alone --------------------------------------------------------------


def test_attempts_in_flight_are_bounded_per_user_and_per_address() -> None:
    clock = Clock()
    t = LoginThrottle(max_inflight_user=2, max_inflight_address=3, clock=clock)
    t.failed("someone", "A")  # A has a recent failure: A is held to the users' bounds
    with t.attempt("alice", "A"), t.attempt("alice", "A"):
        with pytest.raises(TooManyAttempts) as refused, t.attempt("alice", "A"):
            pass
        assert refused.value.headers == {"Retry-After": "1"}
        with t.attempt("bob", "A"):  # another user from A: A's third slot
            with pytest.raises(TooManyAttempts), t.attempt("carol", "A"):
                pass  # A is full, whoever the user
            assert t.in_flight("bob", "A") == (1, 3)
        # robots, credentials that verified before: not held to the user's bound
        with t.attempt("alice", "A", user_bound=False):
            assert t.in_flight("alice", "A") == (3, 3)
    assert t.in_flight("alice", "A") == (0, 0)
    with t.attempt("alice", "A"):  # the slots are free again
        pass


def test_a_clean_address_is_not_held_to_the_users_bound() -> None:
    """Guesses from A fill alice's slots; alice from B (no failures, nothing in flight)
    still gets her password checked, but B gets one such attempt at a time."""
    clock = Clock()
    t = LoginThrottle(max_inflight_user=1, window=60, clock=clock)
    t.failed("alice", "A")
    with t.attempt("alice", "A"):
        with pytest.raises(TooManyAttempts), t.attempt("alice", "A"):
            pass
        with t.attempt("alice", "B"), pytest.raises(TooManyAttempts), t.attempt("alice", "B"):
            pass  # the second at once from B is held to alice's bound
        t.failed("alice", "B")
        with pytest.raises(TooManyAttempts), t.attempt("alice", "B"):
            pass  # B failed: no longer clean
        clock.now += 61
        with t.attempt("alice", "B"):  # B's failure is out of the window
            pass


def test_retry_after_is_the_current_delay() -> None:
    clock = Clock()
    t = LoginThrottle(free=1, base=0.5, cap=3.0, max_inflight_user=1, clock=clock)
    for _ in range(6):
        t.failed("alice", "A")
    assert t.delay("alice", "A") == 3.0
    with (
        t.attempt("alice", "A"),
        pytest.raises(TooManyAttempts) as refused,
        t.attempt("alice", "A"),
    ):
        pass
    assert refused.value.retry_after == 3
    assert refused.value.headers == {"Retry-After": "3"}


# --- Logins: what callers see ---------------------------------------------------------

PW = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture
def htpasswd(tmp_path: Path) -> Htpasswd:
    path = tmp_path / "htpasswd"
    path.write_text("".join(f"{u}:{hash_password(p, rounds=4)}\n" for u, p in PW.items()))
    return Htpasswd(path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _logins(
    htpasswd: Htpasswd | None, clock: Clock, waits: Waits, checks: list[str], **limits: int
) -> Logins:
    throttle = LoginThrottle(clock=clock, **limits)
    logins = Logins(Policy(open_to_authenticated=True), throttle, htpasswd, sleep=waits)
    logins.observe = lambda source, result, _s: checks.append(f"{source}:{result}")
    return logins


async def _outcomes(calls: Sequence[Awaitable[Login | None]]) -> list[str]:
    """Each call's outcome: the source of its login, "wrong" or "429"."""
    got = await asyncio.gather(*calls, return_exceptions=True)
    out = []
    for g in got:
        if isinstance(g, TooManyAttempts):
            out.append("429")
        elif isinstance(g, BaseException):
            raise g
        else:
            out.append(g.source if g is not None else "wrong")
    return out


def test_only_failures_wait_and_a_success_clears_nothing(htpasswd: Htpasswd, clock: Clock) -> None:
    waits, checks = Waits(clock), list[str]()
    logins = _logins(htpasswd, clock, waits, checks)  # free 3, base 0.25 s

    async def run() -> None:
        for i in range(6):
            assert await logins.login("alice", f"guess-{i}", "A") is None
        assert waits.seen == [0.25, 0.5, 1.0]
        found = await logins.login("alice", "alice-pw", "A")  # not verified yet: bcrypt
        assert found is not None and found.identity.name == "alice"
        assert waits.seen == [0.25, 0.5, 1.0]  # the correct password did not wait
        assert checks[-1] == "htpasswd:success"
        # the guesser's count is still there: alice logging in does not wipe it
        assert await logins.login("alice", "guess-6", "B") is None
        assert waits.seen[-1] == 2.0

    asyncio.run(run())


def test_parallel_guesses_are_refused_before_any_check(htpasswd: Htpasswd, clock: Clock) -> None:
    waits, checks = Waits(clock), list[str]()
    logins = _logins(htpasswd, clock, waits, checks, free=0, max_inflight_user=2)

    async def run() -> None:
        assert await logins.login("bob", "bob-pw", "A") is not None  # verified: cached
        waits.hold = asyncio.Event()  # from now on, failures stay in flight
        checks.clear()
        alice = [asyncio.ensure_future(logins.login("alice", f"g{i}", "A")) for i in range(20)]
        bob = [asyncio.ensure_future(logins.login("bob", f"g{i}", "A")) for i in range(20)]
        await waits.until(4)  # two of each are checked and now wait out their delay
        await asyncio.sleep(0.01)  # (the refusals are answered in the meantime)
        # the 36 others were refused at once, without a password check
        done = [f for f in alice + bob if f.done()]
        assert len(done) == 36
        assert all(isinstance(f.exception(), TooManyAttempts) for f in done)
        assert checks == ["htpasswd:failure"] * 4
        # meanwhile: bob's verified credential, from the guessers' own address, at once
        found = await logins.login("bob", "bob-pw", "A")
        assert found is not None and found.identity.name == "bob"
        # alice (never verified) from an address with no failures: checked, not refused
        found = await logins.login("alice", "alice-pw", "C")
        assert found is not None and found.identity.name == "alice"
        waits.hold.set()
        assert await _outcomes(alice[:2] + bob[:2]) == ["wrong"] * 4

    asyncio.run(run())


def test_identical_credentials_share_one_check(htpasswd: Htpasswd, clock: Clock) -> None:
    """A fleet logging in at once with one account (after a restart: nothing cached)
    takes one slot and one bcrypt check, even with a single slot per user."""
    waits, checks = Waits(clock), list[str]()
    logins = _logins(htpasswd, clock, waits, checks, max_inflight_user=1)

    async def run() -> list[str]:
        logins.throttle.failed("x", "A")  # A is not a clean address
        return await _outcomes([logins.login("alice", "alice-pw", "A") for _ in range(10)])

    assert asyncio.run(run()) == ["htpasswd"] * 10
    assert checks == ["htpasswd:success"]


def test_robots_are_checked_first_and_not_held_to_the_users_bound(clock: Clock) -> None:
    waits, checks = Waits(clock), list[str]()
    logins = _logins(None, clock, waits, checks, free=0, max_inflight_user=1)

    async def robots(name: str, secret: str) -> list[str] | None:
        return ["ci"] if (name, secret) == ("robot$ci", "s3cret") else None

    logins.robots = robots

    async def run() -> None:
        logins.throttle.failed("x", "B")
        waits.hold = asyncio.Event()
        guesses = [asyncio.ensure_future(logins.login("robot$ci", f"g{i}", "A")) for i in range(3)]
        await waits.until(3)
        found = await logins.login("robot$ci", "s3cret", "B")
        assert found is not None and found.source == "robot"
        waits.hold.set()
        assert await _outcomes(guesses) == ["wrong"] * 3

    asyncio.run(run())


# --- LDAP, against a real slapd -------------------------------------------------------


@pytest.fixture
def ldap_logins(slapd: Slapd, clock: Clock) -> Iterator[tuple[Logins, Waits]]:
    ldap = build_ldap(LdapSettings(**ldap_settings(slapd, "starttls")))
    assert ldap is not None
    ldap.clock = clock
    waits = Waits(clock)
    throttle = LoginThrottle(free=0, max_inflight_user=1, clock=clock)
    logins = Logins(Policy(open_to_authenticated=True), throttle, None, ldap, sleep=waits)
    yield logins, waits
    ldap.close()


# ldap3's StartTLS calls ssl.match_hostname (deprecated; a warning, not an error, in wharf)
@pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning")
def test_ldap_credentials_that_verified_before_are_not_refused(
    ldap_logins: tuple[Logins, Waits], clock: Clock
) -> None:
    """alice verified once; her cache entry expired (``refresh``) while someone guesses
    her password from her own address: her login is bound again, not refused."""
    logins, waits = ldap_logins
    ldap = logins.ldap
    assert ldap is not None

    async def run() -> None:
        assert await logins.login("alice", password("alice"), "A") is not None
        clock.now += ldap.refresh + 1
        assert ldap.cached("alice", password("alice")) is None
        waits.hold = asyncio.Event()
        guess = asyncio.ensure_future(logins.login("alice", "guess", "A"))
        await waits.until(1)
        with pytest.raises(TooManyAttempts):  # a new guess finds alice's one slot taken
            await logins.login("alice", "guess-2", "A")
        found = await logins.login("alice", password("alice"), "A")
        assert found is not None and found.source == "ldap" and "devs" in found.identity.groups
        waits.hold.set()
        assert await guess is None

    asyncio.run(run())


# --- htpasswd: what a check costs, what stays verified ----------------------------------


def _write(path: Path, users: dict[str, tuple[str, int]]) -> None:
    path.write_text("".join(f"{u}:{hash_password(p, rounds=c)}\n" for u, (p, c) in users.items()))


def test_an_unknown_user_costs_what_the_files_users_cost(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    _write(path, {"alice": ("a", 5), "bob": ("b", 5)})
    h = Htpasswd(path)
    assert h.cost_for("alice") == 5
    assert {h.cost_for(f"nobody-{i}") for i in range(50)} == {5}  # not the old cost 10
    assert not h.check("nobody-1", "x") and not h.check("alice", "x")
    # mixed costs: an unknown name gets one of them, as often as the file has it, and
    # always the same one
    _write(path, {"alice": ("a", 4), "bob": ("b", 4), "carol": ("c", 4), "dave": ("d", 6)})
    h.reload_if_changed()
    assert (h.cost_for("alice"), h.cost_for("dave")) == (4, 6)
    costs = [h.cost_for(f"nobody-{i}") for i in range(400)]
    assert set(costs) == {4, 6}
    assert 40 < costs.count(6) < 160  # a quarter of 400, give or take
    assert [h.cost_for(f"nobody-{i}") for i in range(400)] == costs
    path.write_text("")
    h.reload_if_changed()
    assert h.cost_for("nobody") == 10  # no entries: the default cost


def test_a_verified_password_stays_verified_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    _write(path, {"alice": ("a-pw", 4), "bob": ("b-pw", 4)})
    h = Htpasswd(path)
    assert not h.cached("alice", "a-pw")
    assert h.check("alice", "a-pw") and h.check("bob", "b-pw")
    assert h.cached("alice", "a-pw") and not h.cached("alice", "wrong")
    text = path.read_text()
    alice_line = text.splitlines()[0]
    path.write_text(f"{alice_line}\ncarol:{hash_password('c-pw', rounds=4)}\n")  # bob removed
    assert h.cached("alice", "a-pw")  # alice's entry did not change
    assert not h.cached("bob", "b-pw") and not h.check("bob", "b-pw")
    _write(path, {"alice": ("new-pw", 4)})
    assert not h.cached("alice", "a-pw") and not h.check("alice", "a-pw")
    assert h.check("alice", "new-pw")
