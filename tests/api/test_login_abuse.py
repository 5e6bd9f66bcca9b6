"""Password guessing against a real server (htpasswd): parallel guesses are refused with
429 before any check, the victim is not slowed, and unknown users cost what known ones do.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from tests.support.auth import PASSWORDS, token_config, write_htpasswd
from tests.support.server import WharfServer, _merge

ATTACKERS = 50


def _config(tmp_path: Path, throttle: dict[str, Any] | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "htpasswd": {"realm": "wharf-test", "path": str(write_htpasswd(tmp_path / "htpasswd"))}
    }
    if throttle is not None:
        auth["throttle"] = throttle
    # one worker: the throttle counts per process
    return {"http": {"workers": 1}, "auth": auth}


def _from(server: WharfServer, address: str, **kw: Any) -> httpx.Client:
    """A client whose connections come from ``address`` (any 127.x.y.z reaches the server)."""
    return server.client(transport=httpx.HTTPTransport(local_address=address), **kw)


def _guess(
    server: WharfServer, users: list[str], until: float, start: threading.Barrier
) -> Callable[[int], list[httpx.Response]]:
    """A guesser's loop: wrong passwords for ``users`` (in turn), from 127.0.0.1, until
    ``until`` (monotonic); after a 429 it pauses 0.1 s (to spare the test machine)."""

    def run(n: int) -> list[httpx.Response]:
        answers: list[httpx.Response] = []
        with server.client() as c:
            start.wait()
            i = 0
            while True:
                user = users[(n + i) % len(users)]
                answers.append(c.get("/v2/", auth=(user, f"guess-{n}-{i}")))
                i += 1
                if time.monotonic() >= until:
                    return answers
                if answers[-1].status_code == 429:
                    time.sleep(0.1)

    return run


def _until_logged(server: WharfServer, line: str, times: int) -> None:
    deadline = time.monotonic() + 30
    while server.log().count(line) < times:
        assert time.monotonic() < deadline, f"{line!r} not logged {times} times"
        time.sleep(0.05)


def _code(r: httpx.Response) -> str:
    code: str = r.json()["errors"][0]["code"]
    return code


def test_parallel_guesses_are_refused_at_once_and_checks_are_bounded(
    make_wharf: Callable[..., WharfServer], tmp_path: Path
) -> None:
    server = make_wharf(_config(tmp_path))  # the defaults: 4 in flight per user, 8 per address
    start = threading.Barrier(ATTACKERS)
    until = time.monotonic() + 4
    with ThreadPoolExecutor(ATTACKERS) as pool:
        runs = list(pool.map(_guess(server, ["alice"], until, start), range(ATTACKERS)))
    answers = [r for run in runs for r in run]
    assert {r.status_code for r in answers} <= {401, 429}
    first = [run[0] for run in runs]
    refused_at_once = [r for r in first if r.status_code == 429]
    assert len(refused_at_once) >= ATTACKERS - 15, [r.status_code for r in first]
    for r in refused_at_once:
        assert _code(r) == "TOOMANYREQUESTS"
        assert int(r.headers["retry-after"]) >= 1
    # every 401 is one password check, and a 429 is none: the server logged exactly one
    # failed login per 401. Over ~4 s, 4 slots whose failures wait 0, 0, 0, 0.25, 0.5,
    # 1, 2, 4, 4 ... s allow about a dozen checks (without the bound: one per guess).
    checked = [r for r in answers if r.status_code == 401]
    assert server.log().count("failed login for user 'alice'") == len(checked)
    assert 3 <= len(checked) <= 20, len(checked)
    assert len(answers) - len(checked) >= 200  # many more guesses were sent and refused


def test_the_victim_is_not_slowed_by_guesses(
    make_wharf: Callable[..., WharfServer], tmp_path: Path
) -> None:
    """While alice's and carol's passwords are guessed in parallel (from 127.0.0.1), with
    failures waiting 1 s, then up to the cap of 4 s: alice's verified credentials, from
    the guessers' own address, and carol's first login, from another address, answer 200
    at once."""
    server = make_wharf(_config(tmp_path, {"base": "1s"}))
    with server.client(auth=("alice", PASSWORDS["alice"])) as alice:
        assert alice.get("/v2/").status_code == 200  # now verified (cached)
    guessers = 20
    start = threading.Barrier(guessers + 1)
    until = time.monotonic() + 3.5
    with ThreadPoolExecutor(guessers) as pool:
        futures = [
            pool.submit(_guess(server, ["alice", "carol"], until, start), n)
            for n in range(guessers)
        ]
        start.wait()
        _until_logged(server, "failed login for user 'alice'", 4)  # answers now wait >= 1 s
        _until_logged(server, "failed login for user 'carol'", 4)
        times: list[float] = []
        with server.client(auth=("alice", PASSWORDS["alice"])) as alice:
            for _ in range(5):
                began = time.monotonic()
                assert alice.get("/v2/").status_code == 200
                times.append(time.monotonic() - began)
        with _from(server, "127.0.0.2", auth=("carol", PASSWORDS["carol"])) as carol:
            for _ in range(3):
                began = time.monotonic()
                assert carol.get("/v2/").status_code == 200
                times.append(time.monotonic() - began)
        answers = [r for f in futures for r in f.result()]
    assert max(times) < 2.0, times  # a failure's answer waits 1 s, 2 s, then 4 s
    statuses = [r.status_code for r in answers]
    assert 429 in statuses and 401 in statuses and 200 not in statuses


def test_an_unknown_user_costs_what_a_known_one_does(
    make_wharf: Callable[..., WharfServer], tmp_path: Path
) -> None:
    """bcrypt cost 5 (``htpasswd -B``'s default) in the file: a wrong password for a
    known user and any password for an unknown one take about as long (medians)."""
    config = _config(tmp_path, {"free": 10_000})  # no delays: only the check is timed
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}"
        for user, pw in PASSWORDS.items()
    ]
    Path(config["auth"]["htpasswd"]["path"]).write_text("\n".join(lines) + "\n")
    server = make_wharf(config)
    known: list[float] = []
    unknown: list[float] = []
    with server.client() as c:
        c.get("/v2/", auth=("nobody-warmup", "x"))  # the first unknown user makes a dummy hash
        for i in range(21):  # interleaved, so the machine's load hits both alike
            for user, into in (("alice", known), (f"nobody-{i}", unknown)):
                began = time.perf_counter()
                assert c.get("/v2/", auth=(user, f"wrong-{i}")).status_code == 401
                into.append(time.perf_counter() - began)
    k, u = statistics.median(known), statistics.median(unknown)
    assert max(k, u) / min(k, u) < 2, (k, u)


def test_every_password_check_answers_429_when_too_many_are_in_flight(tmp_path: Path) -> None:
    """One slot per user; one guess for alice holds it (its failure's answer waits 3 s):
    meanwhile another guess is refused at the token service (GET and the POST password
    grant), on Wharf's API (Basic) and at the web UI's sign-in."""
    server = WharfServer(tmp_path / "server")
    _merge(server.config, token_config(tmp_path, server.port))
    throttle = {"free": 0, "base": "3s", "maxinflight": {"user": 1}}
    _merge(server.config, {"http": {"workers": 1}, "auth": {"throttle": throttle}})
    server.auth = True
    server.start()
    try:
        with ThreadPoolExecutor(1) as pool, server.client() as c:
            holder = pool.submit(c.get, "/token", auth=("alice", "guess-0"))
            _until_logged(server, "failed login for user 'alice'", 1)
            refused = [
                c.get("/token", params={"service": "wharf-test"}, auth=("alice", "guess-1")),
                c.post(
                    "/token",
                    data={"grant_type": "password", "username": "alice", "password": "guess-2"},
                ),
                c.get("/api/robots", auth=("alice", "guess-3")),
            ]
            for r in refused:
                assert r.status_code == 429, (r.request.url, r.text)
                assert _code(r) == "TOOMANYREQUESTS"
                assert int(r.headers["retry-after"]) >= 1
            csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
            assert csrf is not None
            form = {"csrf": csrf.group(1), "username": "alice", "password": "guess-4"}
            page = c.post("/ui/login", data=form)
            assert page.status_code == 429
            assert "Too many sign-in attempts" in page.text
            assert int(page.headers["retry-after"]) >= 1
            assert holder.result().status_code == 401
        # nothing of the refused guesses was checked: one failed login in the log
        assert server.log().count("failed login for user 'alice'") == 1
    finally:
        server.stop()
