"""The reference registry (Debian's docker-registry, distribution 2.8) as a test peer."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.auth import write_htpasswd
from tests.support.server import _merge, free_port


class ReferenceRegistry:
    """Debian's docker-registry (distribution 2.8) on a free port: open, or with htpasswd
    (Basic) auth for ``users``; ``extra`` is merged into its config.yml (token auth,
    notifications ...)."""

    def __init__(
        self,
        workdir: Path,
        users: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.fail("docker-registry is not installed: run ./scripts/install.sh --test")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users = users
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(workdir / "data")},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "test-secret"},
        }
        if users:
            path = write_htpasswd(workdir / "htpasswd", users)
            config["auth"] = {"htpasswd": {"realm": "ref", "path": str(path)}}
        config = _merge(config, extra or {})
        self.config_path = workdir / "config.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReferenceRegistry:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "serve", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def client(self) -> httpx.Client:
        auth = None
        if self.users:
            user, password = next(iter(self.users.items()))
            auth = httpx.BasicAuth(user, password)
        return httpx.Client(base_url=self.url, auth=auth, timeout=60)
