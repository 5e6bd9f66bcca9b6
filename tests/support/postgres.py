"""A private PostgreSQL cluster for tests: Debian's ``postgresql`` binaries, a temporary
data directory, a free port on 127.0.0.1, trust authentication, stopped at the end.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
user that Debian's package creates (commands run through ``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.server import free_port

SUPERUSER = "wharf"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, if any."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


class PostgresCluster:
    """One ``postgres`` server; :meth:`create_database` gives each test server its own."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.owner = "postgres" if os.geteuid() == 0 else None
        # Not under pytest's tmp_path: that is private to root, and the cluster's owner
        # must reach its data directory.
        self.workdir = Path(tempfile.mkdtemp(prefix="wharf-pg-"))
        self.datadir = self.workdir / "data"
        self.socketdir = self.workdir / "sock"
        self.logfile = self.workdir / "postgres.log"
        self.socketdir.mkdir()
        if self.owner is not None:
            user = pwd.getpwnam(self.owner)
            for path in (self.workdir, self.socketdir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.started = False

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.workdir
        )
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
        return out

    def start(self) -> PostgresCluster:
        self._run(
            "initdb",
            "--pgdata",
            str(self.datadir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            # Collate as production databases usually do (en_US, not C): listings must
            # still come out in byte order.
            "--locale-provider",
            "icu",
            "--icu-locale",
            "en-US",
            "--no-sync",
        )
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.socketdir}",
                "-c listen_addresses=127.0.0.1",
                "-c max_connections=300",
                # A throwaway cluster: durability buys nothing here.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile), "-w",
            "-t", "60", "-o", options,
        )  # fmt: skip
        self.started = True
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser; returns psql's unaligned output."""
        out = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
            "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-c", sql,
        )  # fmt: skip
        return out.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its SQLAlchemy URL (asyncpg)."""
        name = name or f"wharf_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again on the same port."""
        self._run(
            "pg_ctl", "restart", "-D", str(self.datadir), "-l", str(self.logfile), "-m", "fast",
            "-w", "-t", "60",
        )  # fmt: skip

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w")
            self.started = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql("SELECT 1")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
