"""What a login costs: bcrypt per check, an LDAP bind plus group lookups, a token.

Starts a private slapd (Debian's, as the tests do) and a Wharf in token mode (htpasswd
users with bcrypt cost 10, LDAP users over StartTLS, a robot account), then prints p50
and p90 in milliseconds of:

- ``bcrypt``: one bcrypt check (cost 10), what an htpasswd login costs uncached;
- ``ldap``: search with the service account, bind as the user, group searches
  (groupOfNames + posixGroup), over StartTLS with a pooled service connection;
- ``robot``: one SHA-256 check of a robot secret against the database row (SQLite);
- ``token/<source>``: ``GET /token`` over HTTP for an htpasswd user, an LDAP user and a
  robot, with one scope (credentials verified before are cached, as in production);
- ``token/ldap-uncached``: the same for an LDAP user whose cached login has expired
  (``auth.ldap.refresh`` 1s here), so each request binds again.

Usage: ``.venv/bin/python bench/auth_bench.py [-n 200]``. Not a test; CI does not run it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auth.ldap import LdapDirectory
from registry.accounts.records import full_name
from registry.accounts.setup import ldap_options
from registry.accounts.store import check_robot
from registry.config import LdapSettings
from tests.support.server import WharfServer, _merge
from tests.support.slapd import (
    LDAP_POLICY,
    Slapd,
    ldap_settings,
    password,
    token_config,
)


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm up (connections, caches)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def report(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    print(f"{name:22s} p50 {statistics.median(ms):8.2f} ms   p90 {p90:8.2f} ms   n={len(ms)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="repetitions per figure")
    args = ap.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory(prefix="wharf-auth-bench-") as tmp:
        work = Path(tmp)
        slapd = Slapd(work / "slapd").start()
        try:
            hashed = bcrypt.hashpw(b"root-pw", bcrypt.gensalt(rounds=10))
            report("bcrypt (cost 10)", timed(lambda: bcrypt.checkpw(b"root-pw", hashed), n // 4))

            settings = LdapSettings.model_validate(ldap_settings(slapd, "starttls"))
            directory = LdapDirectory(ldap_options(settings))
            report("ldap bind+groups", timed(lambda: directory.authenticate("bob", "bobpw"), n))
            directory.close()

            server = WharfServer(work / "wharf")
            _merge(
                server.config, token_config(work, server.port, ldap_settings(slapd, refresh="1h"))
            )
            # bcrypt cost 10 for the htpasswd user, as `wharf` writes it
            (work / "htpasswd").write_text(f"root:{hashed.decode()}\n")
            server.auth = True
            server.start()
            try:
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    r = c.post(
                        "/api/robots",
                        json={"name": "bench", "groups": ["ci"]},
                        auth=("alice", password("alice")),
                    )
                    r.raise_for_status()
                    robot = ("robot$bench", r.json()["secret"])
                    users = {
                        "token/htpasswd": ("root", "root-pw"),
                        "token/ldap": ("bob", password("bob")),
                        "token/robot": robot,
                    }
                    for name, creds in users.items():

                        def issue(creds: tuple[str, str] = creds) -> None:
                            r = c.get(
                                "/token",
                                params={"service": "wharf-test", "scope": "repository:ci/x:pull"},
                                auth=creds,
                            )
                            assert r.status_code == 200, r.text

                        report(name, timed(issue, n))
                    robot_check = _robot_check(server, robot)
                    report("robot sha256+db row", timed(robot_check, n))
            finally:
                server.stop()

            # LDAP logins that are not cached: refresh 1s, one request every 1.1 s is too
            # slow to bench, so a second server with the cache effectively off is used
            server = WharfServer(work / "wharf2")
            ldap = ldap_settings(slapd, refresh="1s")
            _merge(server.config, token_config(work / "w2", server.port, ldap))
            server.auth = True
            server.start()
            try:
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    users_pw = [(u, password(u)) for u in ("alice", "bob", "carol", "dave")]
                    samples = []
                    for i in range(min(n, 40)):
                        creds = users_pw[i % 4]
                        if i % 4 == 0:
                            time.sleep(1.05)  # let the cached logins expire
                        t = time.perf_counter()
                        r = c.get("/token", params={"service": "wharf-test"}, auth=creds)
                        samples.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, r.text
                    report("token/ldap-uncached", samples)
            finally:
                server.stop()
        finally:
            slapd.stop()
    print(f"(policy: {len(LDAP_POLICY['rules'])} rules; 2 cores shared with other work)")
    return 0


def _robot_check(server: WharfServer, robot: tuple[str, str]) -> Callable[[], None]:
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{server.root / 'wharf.db'}")
    name = full_name(robot[0])

    def check() -> None:
        with engine.connect() as conn:
            assert check_robot(conn, name, robot[1]) is not None

    return check


if __name__ == "__main__":
    raise SystemExit(main())
