"""A real HTTP receiver of registry notifications, run as its own process.

``python -m tests.support.receiver PORT OUT [--secret S] [--mode-file F]`` listens on
127.0.0.1:PORT and appends one JSON line per request to OUT: ``path``, ``headers``,
``body`` (parsed JSON when it is JSON), ``status`` answered, ``signature`` (``valid``,
``invalid`` or ``absent``: checked with the algorithm of docs/events.md, written here
independently of the registry's code) and ``time``. What it answers is read from the mode
file at each request: ``ok`` (200), ``500``, ``hang`` (answers nothing for 30 s), or
``redirect`` (307 to ``/elsewhere``, which answers 200). "Down" is the process stopped.

:class:`Receiver` runs it for tests, on a port that stays the same across restarts.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import free_port

HANG_SECONDS = 30


def check_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """``valid``/``invalid``/``absent``: HMAC-SHA256 over ``<timestamp>.<body>``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp, given = lowered.get("wharf-timestamp"), lowered.get("wharf-signature")
    if not timestamp or not given:
        return "absent"
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
    ok = fresh and hmac.compare_digest(f"sha256={expected.hexdigest()}", given)
    return "valid" if ok else "invalid"


def _serve(port: int, out: Path, secret: str, mode_file: Path) -> None:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            mode = mode_file.read_text().strip() if mode_file.exists() else "ok"
            if self.path == "/elsewhere":
                mode = "ok"
            status = {"ok": 200, "500": 500, "redirect": 307, "hang": 0}.get(mode, 200)
            try:
                parsed: Any = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            headers = dict(self.headers.items())
            record = {
                "time": time.time(),
                "path": self.path,
                "headers": headers,
                "body": parsed,
                "status": status,
                "signature": check_signature(secret, headers, body) if secret else "absent",
            }
            with lock, out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            if mode == "hang":
                time.sleep(HANG_SECONDS)
                status = 200
            self.send_response(status)
            if status == 307:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


class Receiver:
    """The receiver process for a test: start, stop (down), change mode, read records."""

    def __init__(self, workdir: Path, secret: str = "", port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.out = workdir / f"received-{self.port}.jsonl"
        self.mode_file = workdir / f"mode-{self.port}"
        self.secret = secret
        self.proc: subprocess.Popen[bytes] | None = None
        self.out.touch()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self, timeout: float = 15) -> Receiver:
        args = [sys.executable, "-m", "tests.support.receiver", str(self.port), str(self.out)]
        args += ["--mode-file", str(self.mode_file), "--secret", self.secret]
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(args, cwd=root, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return self
            time.sleep(0.05)
        raise RuntimeError("receiver did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def set_mode(self, mode: str) -> None:
        self.mode_file.write_text(mode)

    def records(self) -> list[dict[str, Any]]:
        """Every request recorded so far (a line the receiver is still writing, with no
        newline yet, is left for the next read)."""
        text = self.out.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def events(self) -> list[dict[str, Any]]:
        """The events of every request answered with 200, in arrival order."""
        return [e for r in self.records() if r["status"] == 200 for e in _events_of(r["body"])]

    def wait_for(
        self, predicate: Any, timeout: float = 60, what: str = "events"
    ) -> list[dict[str, Any]]:
        """Poll :meth:`events` until ``predicate(events)`` is true; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: have {len(events)}")
            time.sleep(0.1)


def _events_of(body: Any) -> Iterator[dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        yield from body["events"]  # the envelope
    elif isinstance(body, dict) and body.get("specversion"):
        yield body["data"]  # one CloudEvent
    elif isinstance(body, list):
        yield from (e["data"] for e in body if isinstance(e, dict) and "data" in e)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("out", type=Path)
    p.add_argument("--secret", default="")
    p.add_argument("--mode-file", type=Path, default=Path("/nonexistent"))
    args = p.parse_args()
    _serve(args.port, args.out, args.secret, args.mode_file)


if __name__ == "__main__":
    main()
