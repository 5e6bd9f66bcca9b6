"""The clock the lifecycle tests move (tests/support/clock.py ServerClock) moves a real
server's wall clock, workers included, and nothing else."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from pathlib import Path

from tests.support.clock import ServerClock
from tests.support.server import WharfServer


def test_server_clock_moves_a_running_servers_wall_clock(tmp_path: Path) -> None:
    clock = ServerClock(tmp_path / "clock")
    server = WharfServer(tmp_path / "wharf", clock=clock).start()
    try:
        with server.client() as c:
            before = parsedate_to_datetime(c.get("/v2/").headers["date"]).timestamp()
            clock.advance(30 * 86400)
            # uvicorn refreshes its Date header once a second
            seen = before
            for _ in range(40):
                seen = parsedate_to_datetime(c.get("/v2/").headers["date"]).timestamp()
                if seen > before + 86400:
                    break
                time.sleep(0.1)
            assert 30 * 86400 - 60 < seen - before < 30 * 86400 + 60
            assert c.get("/v2/").status_code == 200  # timeouts and timers unaffected
    finally:
        server.stop()
