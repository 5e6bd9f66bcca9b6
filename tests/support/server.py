"""Start and stop a real ``wharf serve`` process (uvicorn) for tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.clock import ServerClock

# every server started in this test session, so a fixture can read what each answered
_started: dict[int, WharfServer] = {}
_FIVE_XX = re.compile(rb'"status":(5\d\d)\b')


def started_servers() -> list[WharfServer]:
    """The registries started (and not yet forgotten) in this session."""
    return list(_started.values())


def forget_stopped() -> None:
    """Stop tracking servers that are stopped (a restart tracks them again)."""
    for key, server in list(_started.items()):
        if server.proc is None:
            del _started[key]


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel may hand the same ephemeral port to two binds in a row once the
    first socket is closed, so a port already given to a caller in this test
    process is never given again (two calls for one server's HTTP and debug
    listeners once returned the same port and the server failed to start).
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class WharfServer:
    """One registry process on its own port and data directory."""

    config_option: tuple[str, ...] = ()  # ("--config",): `wharf serve --config FILE`

    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any] | None = None,
        clock: ServerClock | None = None,
    ) -> None:
        self.workdir = workdir
        self.clock = clock  # the process's wall clock, moved by the test (libfaketime)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.debug_port = free_port()
        self.root = workdir / "data"
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "wharf.log"
        cfg: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "info"},
            # metrics without credentials on a second address (``http.debug.addr``)
            "http": {
                "addr": f"127.0.0.1:{self.port}",
                "debug": {"addr": f"127.0.0.1:{self.debug_port}"},
            },
            "storage": {"filesystem": {"rootdirectory": str(self.root)}},
        }
        self.config = _merge(cfg, config or {})
        self.tls = bool(self.config["http"].get("tls", {}).get("certificate"))
        self.auth = bool(self.config.get("auth"))  # then /v2/ answers 401 when ready
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as clients name the registry."""
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where the metrics are served without credentials (the debug address)."""
        return f"http://127.0.0.1:{self.debug_port}/metrics"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self, timeout: float = 120) -> WharfServer:
        _started[id(self)] = self
        self.config_path.write_text(yaml.safe_dump(self.config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        if self.clock is not None:
            env.update(self.clock.env())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "registry.cli",
                    "serve",
                    *self.config_option,
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wharf exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{self.url}/v2/", verify=False, timeout=1)
                if r.status_code == 200 or (r.status_code == 401 and self.auth):
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"wharf did not answer in {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL for a crash: then the whole process group, workers
        included, dies at once, as when a machine loses power)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        elif sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def restart(self) -> WharfServer:
        self.stop()
        return self.start()

    def log_size(self) -> int:
        """How many bytes the log holds now (an offset for :meth:`server_errors`)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def server_errors(self, offset: int = 0) -> list[tuple[int, str]]:
        """(status, line) of each access-log line after byte ``offset`` of the log whose
        status is 5xx."""
        if not self.log_path.exists():
            return []
        with self.log_path.open("rb") as f:
            f.seek(offset)
            lines = f.read().splitlines()
        found = []
        for line in lines:
            m = _FIVE_XX.search(line)
            if m:
                found.append((int(m.group(1)), line.decode(errors="replace")))
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kw: Any) -> httpx.Client:
        """An HTTP client whose base URL is the registry."""
        return httpx.Client(base_url=self.url, verify=False, timeout=60, **kw)
